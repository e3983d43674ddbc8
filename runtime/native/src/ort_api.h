// The few ONNX Runtime C API functions the ONNX Runtime engine calls, declared by
// Edge4K itself (no ONNX Runtime header is vendored or needed to build the runner).
//
// ONNX Runtime's C API is one exported symbol, OrtGetApiBase(), whose GetApi(version)
// returns a table of function pointers (struct OrtApi). ONNX Runtime keeps that
// table append-only across releases (its ABI promise), so a function's position in
// it never changes; `Slot` below names the positions of the functions used here.
// kMinApiVersion is the release that added plugin execution providers (1.22), the
// newest position used. tests/test_native_ort.py checks the table against the
// onnxruntime wheel's library at run time (error round trip, build string, device
// names) before anything else runs.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edge4k::ort {

struct Status;   // OrtStatus*: null means success
struct Env;
struct Session;
struct SessionOptions;
struct Value;
struct MemoryInfo;
struct TypeInfo;
struct TensorTypeAndShapeInfo;
struct EpDevice;
struct HardwareDevice;
struct Allocator;

constexpr uint32_t kMinApiVersion = 22;
constexpr int kLoggingLevelFatal = 4;
constexpr int kErrorFail = 1;
constexpr int kArenaAllocator = 1, kMemTypeDefault = 0;
constexpr int kElementFloat = 1;

struct ApiBase {
  const void* const* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};
using GetApiBaseFn = const ApiBase* (*)();

// Positions in the OrtApi table.
enum Slot : int {
  CreateStatus = 0,
  GetErrorCode = 1,
  GetErrorMessage = 2,
  CreateEnv = 3,
  CreateSession = 7,
  Run = 9,
  CreateSessionOptions = 10,
  SetSessionLogSeverityLevel = 22,
  SetIntraOpNumThreads = 24,
  SessionGetInputCount = 30,
  SessionGetOutputCount = 31,
  SessionGetInputTypeInfo = 33,
  SessionGetOutputTypeInfo = 34,
  SessionGetInputName = 36,
  SessionGetOutputName = 37,
  CreateTensorWithDataAsOrtValue = 49,
  GetTensorMutableData = 51,
  CastTypeInfoToTensorInfo = 55,
  GetTensorElementType = 60,
  GetDimensionsCount = 61,
  GetDimensions = 62,
  GetTensorTypeAndShape = 65,
  CreateCpuMemoryInfo = 69,
  AllocatorFree = 76,
  GetAllocatorWithDefaultOptions = 78,
  ReleaseEnv = 92,
  ReleaseStatus = 93,
  ReleaseMemoryInfo = 94,
  ReleaseSession = 95,
  ReleaseValue = 96,
  ReleaseTypeInfo = 98,
  ReleaseTensorTypeAndShapeInfo = 99,
  ReleaseSessionOptions = 100,
  AddSessionConfigEntry = 130,
  SessionOptionsAppendExecutionProvider = 216,
  GetBuildInfoString = 254,
  RegisterExecutionProviderLibrary = 301,
  GetEpDevices = 303,
  SessionOptionsAppendExecutionProvider_V2 = 304,
  EpDevice_EpName = 312,
  EpDevice_EpVendor = 313,
};

// Function types, one per slot used.
using CreateStatusFn = Status* (*)(int code, const char* msg);
using GetErrorCodeFn = int (*)(const Status*);
using GetErrorMessageFn = const char* (*)(const Status*);
using CreateEnvFn = Status* (*)(int level, const char* logid, Env** out);
using CreateSessionFn = Status* (*)(const Env*, const char* path, const SessionOptions*, Session** out);
using RunFn = Status* (*)(Session*, const void* run_options, const char* const* input_names,
                          const Value* const* inputs, size_t input_count, const char* const* output_names,
                          size_t output_count, Value** outputs);
using CreateSessionOptionsFn = Status* (*)(SessionOptions** out);
using SetIntFn = Status* (*)(SessionOptions*, int);
using SessionCountFn = Status* (*)(const Session*, size_t* out);
using SessionTypeInfoFn = Status* (*)(const Session*, size_t index, TypeInfo** out);
using SessionNameFn = Status* (*)(const Session*, size_t index, Allocator*, char** out);
using CreateTensorWithDataFn = Status* (*)(const MemoryInfo*, void* data, size_t bytes, const int64_t* shape,
                                           size_t rank, int element_type, Value** out);
using GetTensorMutableDataFn = Status* (*)(Value*, void** out);
using CastTypeInfoToTensorInfoFn = Status* (*)(const TypeInfo*, const TensorTypeAndShapeInfo** out);
using GetTensorElementTypeFn = Status* (*)(const TensorTypeAndShapeInfo*, int* out);
using GetDimensionsCountFn = Status* (*)(const TensorTypeAndShapeInfo*, size_t* out);
using GetDimensionsFn = Status* (*)(const TensorTypeAndShapeInfo*, int64_t* dims, size_t count);
using GetTensorTypeAndShapeFn = Status* (*)(const Value*, TensorTypeAndShapeInfo** out);
using CreateCpuMemoryInfoFn = Status* (*)(int allocator_type, int mem_type, MemoryInfo** out);
using AllocatorFreeFn = Status* (*)(Allocator*, void* p);
using GetAllocatorWithDefaultOptionsFn = Status* (*)(Allocator** out);
using ReleaseFn = void (*)(void*);
using AddSessionConfigEntryFn = Status* (*)(SessionOptions*, const char* key, const char* value);
using AppendProviderFn = Status* (*)(SessionOptions*, const char* name, const char* const* keys,
                                     const char* const* values, size_t count);
using GetBuildInfoStringFn = const char* (*)();
using RegisterEpLibraryFn = Status* (*)(Env*, const char* registration_name, const char* path);
using GetEpDevicesFn = Status* (*)(const Env*, const EpDevice* const** devices, size_t* count);
using AppendProviderV2Fn = Status* (*)(SessionOptions*, Env*, const EpDevice* const* devices, size_t device_count,
                                       const char* const* keys, const char* const* values, size_t count);
using EpDeviceStringFn = const char* (*)(const EpDevice*);

}  // namespace edge4k::ort
