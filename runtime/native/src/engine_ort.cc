// ONNX Runtime engine: an android-qnn build's per-stage EPContext models
// (STAGE.ctx.onnx, each holding a QNN context binary for one Snapdragon SoC) run on
// the QNN execution provider's HTP backend: the phone's Hexagon NPU, or on x86-64
// the HTP emulation that QAIRT's x86 libraries carry.
//
// ONNX Runtime is opened with dlopen when a build needs it, so one runner binary
// works with or without it. The QNN execution provider is either a plugin library
// (libonnxruntime_providers_qnn.so, as onnxruntime-qnn ships it), registered with
// ONNX Runtime, or built into libonnxruntime.so (the onnxruntime-android-qnn
// package), selected by name.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>

#ifdef __ANDROID__
#include <sys/system_properties.h>
#endif

#include "engine.h"
#include "ort_api.h"

namespace edge4k {
namespace {

constexpr const char* kQnnEp = "QNNExecutionProvider";
constexpr const char* kQnnPlugin = "libonnxruntime_providers_qnn.so";
constexpr const char* kOrtLibrary = "libonnxruntime.so";

std::string dir_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// The folder this code was loaded from (the runner, or libedge4k.so inside an app).
std::string own_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&dir_of), &info) && info.dli_fname) {
    char resolved[4096];
    if (realpath(info.dli_fname, resolved)) return dir_of(resolved);
  }
  return ".";
}

bool is_file(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

// Folders where the shared libraries of a run are looked for, in order.
std::vector<std::string> library_dirs() {
  std::vector<std::string> dirs;
  if (const char* ld = std::getenv("LD_LIBRARY_PATH")) {
    std::stringstream s(ld);
    for (std::string d; std::getline(s, d, ':');)
      if (!d.empty()) dirs.push_back(d);
  }
  const std::string own = own_dir();
  dirs.push_back(own + "/lib");
  dirs.push_back(own);
  return dirs;
}

// The process-wide ONNX Runtime: the library, its API table, one environment, and
// the QNN execution provider registered once. Opening it again after a failure
// repeats the failure's message.
class OrtRuntime {
 public:
  static OrtRuntime& get() {
    static std::mutex mutex;
    static std::unique_ptr<OrtRuntime> runtime;
    static std::string failure;
    std::lock_guard<std::mutex> lock(mutex);
    if (!runtime && failure.empty()) {
      try {
        runtime.reset(new OrtRuntime());
      } catch (const Error& e) {
        failure = e.what();
      }
    }
    if (!runtime) throw Error(failure);
    return *runtime;
  }

  template <typename Fn>
  Fn fn(ort::Slot slot) const { return reinterpret_cast<Fn>(api_[slot]); }

  // Throws Error("<what>: <ONNX Runtime's message>") for a failed call.
  void check(ort::Status* status, const std::string& what) const {
    if (!status) return;
    std::string message = fn<ort::GetErrorMessageFn>(ort::GetErrorMessage)(status);
    fn<ort::ReleaseFn>(ort::ReleaseStatus)(status);
    const auto newline = message.find('\n');
    if (newline != std::string::npos) message.resize(newline);
    throw Error(what + ": " + message);
  }

  ort::Env* env() const { return env_; }
  const std::string& library() const { return library_; }
  const std::string& version() const { return version_; }
  const std::string& qnn_plugin() const { return qnn_plugin_; }   // empty: QNN built into libonnxruntime.so
  const std::vector<const ort::EpDevice*>& qnn_devices() const { return qnn_devices_; }

 private:
  OrtRuntime() {
    open_library();
    env_check();
    register_qnn();
  }

  void open_library() {
    std::vector<std::string> tried;
    void* handle = nullptr;
    if (const char* given = std::getenv("EDGE4K_ORT_LIBRARY")) {
      handle = dlopen(given, RTLD_NOW | RTLD_LOCAL);
      if (!handle) throw Error(std::string("cannot load ONNX Runtime from EDGE4K_ORT_LIBRARY=") + given + ": " + dlerror());
      library_ = given;
    } else {
      for (const auto& dir : library_dirs()) {
        const std::string path = dir + "/" + kOrtLibrary;
        tried.push_back(dir);
        if (!is_file(path)) continue;
        handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) throw Error("cannot load ONNX Runtime " + path + ": " + dlerror());
        library_ = path;
        break;
      }
    }
    if (!handle) {
      std::string where;
      for (const auto& d : tried) where += (where.empty() ? "" : ", ") + d;
      throw Error(std::string("ONNX Runtime (") + kOrtLibrary + ") not found in " + where +
                  "; android-qnn builds need it: set EDGE4K_ORT_LIBRARY to its path or put it on LD_LIBRARY_PATH "
                  "(pip's onnxruntime wheel has it in onnxruntime/capi/, the onnxruntime-android-qnn "
                  "package in jni/arm64-v8a/)");
    }
    auto base = reinterpret_cast<ort::GetApiBaseFn>(dlsym(handle, "OrtGetApiBase"));
    if (!base) throw Error(library_ + " is not ONNX Runtime (no OrtGetApiBase)");
    version_ = base()->GetVersionString();
    api_ = base()->GetApi(ort::kMinApiVersion);
    if (!api_)
      throw Error("ONNX Runtime " + version_ + " at " + library_ + " is too old: the runner needs 1." +
                  std::to_string(ort::kMinApiVersion) + " or newer (plugin execution providers)");
  }

  void env_check() {
    // Fatal only: ONNX Runtime's own log lines would break the one-line error rule; its
    // messages reach the user through the statuses the runner reports.
    check(fn<ort::CreateEnvFn>(ort::CreateEnv)(ort::kLoggingLevelFatal, "edge4k", &env_), "ONNX Runtime CreateEnv");
  }

  // The QNN execution provider: a plugin library if one is found, else built in.
  void register_qnn() {
    std::string plugin;
    if (const char* given = std::getenv("EDGE4K_QNN_EP_LIBRARY")) {
      plugin = given;
      if (!is_file(plugin)) throw Error("EDGE4K_QNN_EP_LIBRARY=" + plugin + " does not exist");
    } else {
      std::vector<std::string> dirs = library_dirs();
      dirs.insert(dirs.begin(), dir_of(library_));
      for (const auto& dir : dirs)
        if (is_file(dir + "/" + kQnnPlugin)) {
          plugin = dir + "/" + kQnnPlugin;
          break;
        }
    }
    if (plugin.empty()) return;   // built-in QNN EP: chosen per session by name
    char resolved[4096];
    if (realpath(plugin.c_str(), resolved)) plugin = resolved;   // ONNX Runtime reads relative paths from its own folder
    check(fn<ort::RegisterEpLibraryFn>(ort::RegisterExecutionProviderLibrary)(env_, kQnnEp, plugin.c_str()),
          "ONNX Runtime cannot register the QNN execution provider " + plugin);
    qnn_plugin_ = plugin;
    const ort::EpDevice* const* devices = nullptr;
    size_t count = 0;
    check(fn<ort::GetEpDevicesFn>(ort::GetEpDevices)(env_, &devices, &count), "ONNX Runtime GetEpDevices");
    for (size_t i = 0; i < count; ++i)
      if (std::string(fn<ort::EpDeviceStringFn>(ort::EpDevice_EpName)(devices[i])) == kQnnEp)
        qnn_devices_.push_back(devices[i]);
    if (qnn_devices_.empty())
      throw Error("the QNN execution provider " + plugin + " reports no device on this machine");
  }

  const void* const* api_ = nullptr;
  ort::Env* env_ = nullptr;
  std::string library_, version_, qnn_plugin_;
  std::vector<const ort::EpDevice*> qnn_devices_;
};

#ifdef __ANDROID__
std::string phone_soc_model() {
  char value[PROP_VALUE_MAX] = {};
  __system_property_get("ro.soc.model", value);
  return value;
}
#endif

struct Stage {
  ort::Session* session = nullptr;
  std::vector<std::string> input_names, output_names;
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<int64_t> output_shape;
  std::string file;
  Json placement;
};

class OrtEngine : public Engine {
 public:
  OrtEngine(const std::string& artifacts, const Json& manifest, int threads) : ort_(OrtRuntime::get()) {
    const Json& qnn = field(manifest, "qnn", "manifest.json (an android-qnn build)");
    soc_ = text(field(qnn, "soc", "manifest qnn"), "qnn.soc");
    const std::string soc_model = std::to_string(integer(field(qnn, "soc_model", "manifest qnn"), "qnn.soc_model"));
    const std::string htp_arch = std::to_string(integer(field(qnn, "htp_arch", "manifest qnn"), "qnn.htp_arch"));
#ifdef __ANDROID__
    const std::string phone = phone_soc_model();
    if (!phone.empty() && phone != soc_)
      throw Error(artifacts + " holds context binaries for " + soc_ + ", but this phone reports ro.soc.model=" + phone +
                  "; recompile with --target android-qnn --soc " + phone);
#else
    emulation_note_ = "network stages ran on an x86-64 emulation of the " + soc_ + " HTP (v" + htp_arch +
                      "); their latencies say nothing about the phone's speed";
#endif
    threads_ = threads > 0 ? threads : 1;
    std::map<std::string, std::string> hashed;
    for (const auto& [stage, entry] : field(manifest, "stages", "manifest.json").items()) {
      const std::string file = artifacts + "/" + text(field(entry, "file", stage), stage + " file");
      if (!is_file(file)) throw Error("cannot read " + file);
      check_digest(file, entry, stage, &hashed);
      if (entry.contains("weight_bytes") && entry["weight_bytes"].is_number())
        weight_bytes_ += entry["weight_bytes"].get<long long>();
      Json place = entry.contains("placement") ? entry["placement"] : Json::object();
      const bool all_on_htp = place.contains("cpu") && place["cpu"].is_number() && place["cpu"].get<int>() == 0;
      const int nodes = place.contains("nodes") && place["nodes"].is_number() ? place["nodes"].get<int>() : 0;
      stages_[stage] = open_stage(stage, file, soc_model, htp_arch, all_on_htp, nodes);
      stages_[stage].file = file;
      Json& p = stages_[stage].placement;
      p = {{"engine", "onnxruntime"}, {"accelerator", "qnn-htp"}, {"provider", kQnnEp}, {"soc", soc_},
           {"emulated", !emulation_note_.empty()}, {"cpu_fallback_allowed", !all_on_htp}};
      // The build's own count of the stage's ONNX nodes inside the context binary (HTP) and outside (CPU).
      for (const auto& [from, to] : {std::pair<const char*, const char*>{"nodes", "nodes"}, {"htp", "htp_nodes"},
                                     {"cpu", "cpu_nodes"}})
        if (place.contains(from)) p[to] = place[from];
    }
  }

  ~OrtEngine() override {
    for (auto& [name, s] : stages_)
      if (s.session) ort_.fn<ort::ReleaseFn>(ort::ReleaseSession)(s.session);
  }

  Tensor run(const std::string& stage, const std::vector<const float*>& inputs) override {
    auto it = stages_.find(stage);
    if (it == stages_.end()) throw Error("the build has no stage '" + stage + "'");
    Stage& s = it->second;
    if (inputs.size() != s.input_names.size())
      throw Error(stage + " takes " + std::to_string(s.input_names.size()) + " inputs, got " +
                  std::to_string(inputs.size()));
    ort::MemoryInfo* cpu = nullptr;
    ort_.check(ort_.fn<ort::CreateCpuMemoryInfoFn>(ort::CreateCpuMemoryInfo)(ort::kArenaAllocator, ort::kMemTypeDefault, &cpu),
               "ONNX Runtime CreateCpuMemoryInfo");
    std::vector<ort::Value*> values(inputs.size(), nullptr);
    ort::Value* output = nullptr;
    auto release = [&] {
      for (auto* v : values)
        if (v) ort_.fn<ort::ReleaseFn>(ort::ReleaseValue)(v);
      if (output) ort_.fn<ort::ReleaseFn>(ort::ReleaseValue)(output);
      ort_.fn<ort::ReleaseFn>(ort::ReleaseMemoryInfo)(cpu);
    };
    try {
      for (size_t i = 0; i < inputs.size(); ++i) {
        const auto& shape = s.input_shapes[i];
        size_t n = 1;
        for (auto d : shape) n *= static_cast<size_t>(d);
        ort_.check(ort_.fn<ort::CreateTensorWithDataFn>(ort::CreateTensorWithDataAsOrtValue)(
                       cpu, const_cast<float*>(inputs[i]), n * sizeof(float), shape.data(), shape.size(),
                       ort::kElementFloat, &values[i]),
                   stage + ": cannot wrap input " + s.input_names[i]);
      }
      std::vector<const char*> in_names, out_names;
      for (const auto& n : s.input_names) in_names.push_back(n.c_str());
      out_names.push_back(s.output_names.at(0).c_str());
      ort_.check(ort_.fn<ort::RunFn>(ort::Run)(s.session, nullptr, in_names.data(), values.data(), values.size(),
                                               out_names.data(), 1, &output),
                 "the QNN HTP failed to run " + stage);
      Tensor t = read_tensor(output, stage);
      release();
      return t;
    } catch (...) {
      release();
      throw;
    }
  }

  Signature signature(const std::string& stage) const override {
    const auto it = stages_.find(stage);
    if (it == stages_.end()) throw Error("the build has no stage '" + stage + "'");
    Signature sig{{}, std::vector<int>(it->second.output_shape.begin(), it->second.output_shape.end()), it->second.file};
    for (const auto& shape : it->second.input_shapes) sig.inputs.emplace_back(shape.begin(), shape.end());
    return sig;
  }
  long long planned_arena_bytes() const override { return -1; }   // QNN plans HTP memory inside the context
  long long weight_bytes() const override { return weight_bytes_; }   // the stages' weight_bytes (backends/qnn)
  int threads() const override { return threads_; }
  std::string name() const override { return "onnxruntime"; }
  Json about() const override { return onnxruntime_about(); }
  Json placement(const std::string& stage) const override {
    const auto it = stages_.find(stage);
    return it == stages_.end() ? Json() : it->second.placement;
  }
  std::string emulation_note() const override { return emulation_note_; }

 private:
  // nodes: how many ONNX nodes the build placed on the HTP (all of them when all_on_htp).
  Stage open_stage(const std::string& stage, const std::string& file, const std::string& soc_model,
                   const std::string& htp_arch, bool all_on_htp, int nodes) {
    ort::SessionOptions* so = nullptr;
    ort_.check(ort_.fn<ort::CreateSessionOptionsFn>(ort::CreateSessionOptions)(&so), "ONNX Runtime CreateSessionOptions");
    Stage s;
    try {
      ort_.check(ort_.fn<ort::SetIntFn>(ort::SetSessionLogSeverityLevel)(so, ort::kLoggingLevelFatal), "log level");
      ort_.check(ort_.fn<ort::SetIntFn>(ort::SetIntraOpNumThreads)(so, threads_), "intra-op threads");
      // A stage the build placed wholly on the HTP must stay there: no silent CPU fallback.
      if (all_on_htp)
        ort_.check(ort_.fn<ort::AddSessionConfigEntryFn>(ort::AddSessionConfigEntry)(so, "session.disable_cpu_ep_fallback", "1"),
                   "session.disable_cpu_ep_fallback");
      // As backends/qnn/ep.py: the HTP backend for this SoC, quantising its own float I/O.
      const char* keys[] = {"backend_type", "soc_model", "htp_arch", "offload_graph_io_quantization"};
      const char* values[] = {"htp", soc_model.c_str(), htp_arch.c_str(), "0"};
      const auto& devices = ort_.qnn_devices();
      if (!ort_.qnn_plugin().empty())
        ort_.check(ort_.fn<ort::AppendProviderV2Fn>(ort::SessionOptionsAppendExecutionProvider_V2)(
                       so, ort_.env(), devices.data(), devices.size(), keys, values, 4),
                   "the QNN execution provider (" + ort_.qnn_plugin() + ") refuses its options");
      else
        ort_.check(ort_.fn<ort::AppendProviderFn>(ort::SessionOptionsAppendExecutionProvider)(so, "QNN", keys, values, 4),
                   "ONNX Runtime " + ort_.version() + " at " + ort_.library() + " has no QNN execution provider, and no " +
                       kQnnPlugin + " was found beside it or on LD_LIBRARY_PATH");
      try {
        ort_.check(ort_.fn<ort::CreateSessionFn>(ort::CreateSession)(ort_.env(), file.c_str(), so, &s.session),
                   "ONNX Runtime says");
      } catch (const Error& e) {
        const std::string said = e.what();
        if (all_on_htp && said.find("fallback") != std::string::npos)
          throw Error("the QNN HTP (" + soc_ + ", v" + htp_arch + ") cannot place all of stage " + stage +
                      ", which the build placed wholly on the HTP (" + std::to_string(nodes) + " nodes); " + said);
        throw Error("the QNN HTP cannot load stage " + stage + " (" + file + "): " + said);
      }
      read_io(s, stage);
    } catch (...) {
      ort_.fn<ort::ReleaseFn>(ort::ReleaseSessionOptions)(so);
      if (s.session) ort_.fn<ort::ReleaseFn>(ort::ReleaseSession)(s.session);
      throw;
    }
    ort_.fn<ort::ReleaseFn>(ort::ReleaseSessionOptions)(so);
    return s;
  }

  void read_io(Stage& s, const std::string& stage) {
    ort::Allocator* alloc = nullptr;
    ort_.check(ort_.fn<ort::GetAllocatorWithDefaultOptionsFn>(ort::GetAllocatorWithDefaultOptions)(&alloc), "allocator");
    auto take = [&](char* name) {
      std::string out = name;
      ort_.check(ort_.fn<ort::AllocatorFreeFn>(ort::AllocatorFree)(alloc, name), "free");
      return out;
    };
    size_t n_in = 0, n_out = 0;
    ort_.check(ort_.fn<ort::SessionCountFn>(ort::SessionGetInputCount)(s.session, &n_in), stage + " input count");
    ort_.check(ort_.fn<ort::SessionCountFn>(ort::SessionGetOutputCount)(s.session, &n_out), stage + " output count");
    if (n_out < 1) throw Error(stage + " has no output");
    for (size_t i = 0; i < n_in; ++i) {
      char* name = nullptr;
      ort_.check(ort_.fn<ort::SessionNameFn>(ort::SessionGetInputName)(s.session, i, alloc, &name), stage + " input name");
      s.input_names.push_back(take(name));
      s.input_shapes.push_back(float_shape(s, i, true, stage + " input " + s.input_names.back()));
    }
    for (size_t i = 0; i < n_out; ++i) {
      char* name = nullptr;
      ort_.check(ort_.fn<ort::SessionNameFn>(ort::SessionGetOutputName)(s.session, i, alloc, &name), stage + " output name");
      s.output_names.push_back(take(name));
    }
    s.output_shape = float_shape(s, 0, false, stage + " output " + s.output_names.at(0));
  }

  // The static float32 shape the session declares for an input or output.
  std::vector<int64_t> float_shape(Stage& s, size_t index, bool input, const std::string& what) {
    ort::TypeInfo* info = nullptr;
    ort_.check(ort_.fn<ort::SessionTypeInfoFn>(input ? ort::SessionGetInputTypeInfo : ort::SessionGetOutputTypeInfo)(
                   s.session, index, &info), what + " type");
    std::vector<int64_t> shape;
    try {
      const ort::TensorTypeAndShapeInfo* tensor = nullptr;
      ort_.check(ort_.fn<ort::CastTypeInfoToTensorInfoFn>(ort::CastTypeInfoToTensorInfo)(info, &tensor), what);
      if (!tensor) throw Error(what + " is not a tensor; recompile the build");
      int type = 0;
      ort_.check(ort_.fn<ort::GetTensorElementTypeFn>(ort::GetTensorElementType)(tensor, &type), what + " type");
      if (type != ort::kElementFloat) throw Error(what + " is not float32; recompile the build");
      shape = dims(tensor, what);
    } catch (...) {
      ort_.fn<ort::ReleaseFn>(ort::ReleaseTypeInfo)(info);
      throw;
    }
    ort_.fn<ort::ReleaseFn>(ort::ReleaseTypeInfo)(info);
    for (auto d : shape)
      if (d <= 0 || d > (1 << 20)) throw Error(what + " has a dynamic or impossible shape; recompile the build");
    return shape;
  }

  std::vector<int64_t> dims(const ort::TensorTypeAndShapeInfo* info, const std::string& stage) const {
    size_t rank = 0;
    ort_.check(ort_.fn<ort::GetDimensionsCountFn>(ort::GetDimensionsCount)(info, &rank), stage + " rank");
    std::vector<int64_t> d(rank);
    ort_.check(ort_.fn<ort::GetDimensionsFn>(ort::GetDimensions)(info, d.data(), rank), stage + " shape");
    return d;
  }

  Tensor read_tensor(ort::Value* value, const std::string& stage) const {
    ort::TensorTypeAndShapeInfo* info = nullptr;
    ort_.check(ort_.fn<ort::GetTensorTypeAndShapeFn>(ort::GetTensorTypeAndShape)(value, &info), stage + " output");
    Tensor t;
    try {
      int type = 0;
      ort_.check(ort_.fn<ort::GetTensorElementTypeFn>(ort::GetTensorElementType)(info, &type), stage + " output type");
      if (type != ort::kElementFloat) throw Error(stage + " returned a non-float32 tensor");
      size_t n = 1;
      for (auto d : dims(info, stage)) {
        t.shape.push_back(static_cast<int>(d));
        n *= static_cast<size_t>(d);
      }
      void* data = nullptr;
      ort_.check(ort_.fn<ort::GetTensorMutableDataFn>(ort::GetTensorMutableData)(value, &data), stage + " output data");
      t.data.assign(static_cast<const float*>(data), static_cast<const float*>(data) + n);
    } catch (...) {
      ort_.fn<ort::ReleaseFn>(ort::ReleaseTensorTypeAndShapeInfo)(info);
      throw;
    }
    ort_.fn<ort::ReleaseFn>(ort::ReleaseTensorTypeAndShapeInfo)(info);
    return t;
  }

  OrtRuntime& ort_;
  std::map<std::string, Stage> stages_;
  std::string soc_, emulation_note_;
  int threads_ = 1;
  long long weight_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Engine> open_onnxruntime(const std::string& artifacts, const Json& manifest, int threads) {
  return std::make_unique<OrtEngine>(artifacts, manifest, threads);
}

Json onnxruntime_about() {
  try {
    const OrtRuntime& ort = OrtRuntime::get();
    // A round trip through the API table: the slot positions in ort_api.h are right
    // for this library if the message and code come back as sent.
    ort::Status* probe = ort.fn<ort::CreateStatusFn>(ort::CreateStatus)(ort::kErrorFail, "edge4k-probe");
    const bool ok = std::string(ort.fn<ort::GetErrorMessageFn>(ort::GetErrorMessage)(probe)) == "edge4k-probe" &&
                    ort.fn<ort::GetErrorCodeFn>(ort::GetErrorCode)(probe) == ort::kErrorFail;
    ort.fn<ort::ReleaseFn>(ort::ReleaseStatus)(probe);
    Json devices = Json::array();
    for (const auto* d : ort.qnn_devices())
      devices.push_back(std::string(ort.fn<ort::EpDeviceStringFn>(ort::EpDevice_EpName)(d)) + " (" +
                        ort.fn<ort::EpDeviceStringFn>(ort::EpDevice_EpVendor)(d) + ")");
    std::string build = ort.fn<ort::GetBuildInfoStringFn>(ort::GetBuildInfoString)();
    return Json{{"onnxruntime", ort.version()}, {"onnxruntime_library", ort.library()},
                {"onnxruntime_build", build}, {"api_table_check", ok},
                {"qnn_ep", ort.qnn_plugin().empty() ? Json("built into " + ort.library()) : Json(ort.qnn_plugin())},
                {"qnn_devices", devices}};
  } catch (const Error& e) {
    return Json{{"onnxruntime_missing", e.what()}};
  }
}

}  // namespace edge4k
