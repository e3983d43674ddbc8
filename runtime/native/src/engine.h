// The engine runs the four network stages of a compiled build. Which engine opens
// a build is decided by its manifest's "backend" field; a runner built without
// that engine says so instead of guessing.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "json.h"

namespace edge4k {

struct Tensor {
  std::vector<int> shape;
  std::vector<float> data;
};

// A stage's input and output shapes as its program declares them (ExecuTorch's MethodMeta,
// ONNX Runtime's session), whatever the manifest says; file: where the program came from.
struct Signature {
  std::vector<std::vector<int>> inputs;
  std::vector<int> output;
  std::string file;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual Signature signature(const std::string& stage) const = 0;
  // inputs: contiguous float32 buffers with the shapes of signature(stage).inputs.
  virtual Tensor run(const std::string& stage, const std::vector<const float*>& inputs) = 0;
  virtual long long planned_arena_bytes() const = 0;   // activation memory the build planned; -1 if unknown
  // The profile's memory.weight_bytes, by the rule of the backend's Python twin (its weight_bytes()).
  virtual long long weight_bytes() const = 0;
  virtual int threads() const = 0;
  virtual std::string name() const = 0;
  virtual Json about() const = 0;                      // versions and what is linked or loaded
  // Where a stage runs: {"engine", "accelerator", ...}; the profile's "stages" entries.
  virtual Json placement(const std::string& stage) const = 0;
  // Non-empty when the accelerator is an emulation (QNN's HTP on x86): the profile's note.
  virtual std::string emulation_note() const { return ""; }
};

// Refuses a stage file whose SHA-256 is not the file_sha256 its manifest entry records (when
// it records one): a damaged program can crash a delegate that trusts its own payload.
// hashed: the digests of files already read for this build (several stages share one program).
void check_digest(const std::string& file, const Json& entry, const std::string& stage,
                  std::map<std::string, std::string>* hashed);

// Engines this runner can open, e.g. {"executorch", "onnxruntime"}.
std::vector<std::string> engine_names();

// threads <= 0 keeps the engine's default.
std::unique_ptr<Engine> open_engine(const std::string& artifacts, const Json& manifest, int threads);

#ifdef EDGE4K_WITH_EXECUTORCH
std::unique_ptr<Engine> open_executorch(const std::string& artifacts, const Json& manifest, int threads);
Json executorch_about();
#endif

// ONNX Runtime + the QNN execution provider (android-qnn builds), loaded at run time.
std::unique_ptr<Engine> open_onnxruntime(const std::string& artifacts, const Json& manifest, int threads);
// What the runner finds of ONNX Runtime right now: {"onnxruntime": version, ...} or {"onnxruntime_missing": why}.
Json onnxruntime_about();

}  // namespace edge4k
