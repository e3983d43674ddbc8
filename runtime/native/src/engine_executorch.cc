// ExecuTorch engine: the build's .pte through ExecuTorch's C++ Module API, one
// method per network stage. Delegates (XNNPACK, QNN, ...) register themselves from
// static initialisers in the libraries the runner links.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/backend/interface.h>
#include <executorch/runtime/platform/runtime.h>

#include "edge4k_kernels.h"
#include "engine.h"

// The wheel ships the thread pool library but not its header; these are the two
// members of executorch::extension::threadpool::ThreadPool the runner calls.
#if __has_include(<executorch/extension/threadpool/threadpool.h>)
#include <executorch/extension/threadpool/threadpool.h>
#else
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
#endif

#ifndef EDGE4K_EXECUTORCH_VERSION
#define EDGE4K_EXECUTORCH_VERSION "unknown"
#endif

namespace edge4k {
namespace {

using executorch::extension::Module;
namespace et = executorch::runtime;

std::string base_version(const std::string& v) { return v.substr(0, v.find('+')); }

std::vector<std::string> registered_backends() {
  std::vector<std::string> names;
  for (size_t i = 0; i < et::get_num_registered_backends(); ++i) {
    auto name = et::get_backend_name(i);
    if (name.ok()) names.emplace_back(*name);
  }
  return names;
}

// ExecuTorch's thread pool is one per process, and every XNNPACK program keeps the pool it was
// loaded with: resizing it under a loaded program makes that program deadlock on its next run.
// So the pool is sized only while no engine is open, and an engine that asks for another size
// while one is open is refused (backends/xnnpack/runtime.py: size_threadpool, the Python side's rule).
class PoolLease {
 public:
  explicit PoolLease(int threads) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto* pool = executorch::extension::threadpool::get_threadpool();
    if (threads > 0) {
      const int current = pool ? static_cast<int>(pool->get_thread_count()) : 0;
      if (current != threads && open_ > 0)
        throw Error("ExecuTorch's thread pool runs " + std::to_string(current) + " threads for another open "
                    "runner in this process and cannot be resized under it; open this one with threads " +
                    std::to_string(current) + " (or 0), or close the others first");
      if (current != threads && (!pool || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads))))
        throw Error("cannot resize ExecuTorch's thread pool to " + std::to_string(threads) + " threads");
    }
    ++open_;
  }
  ~PoolLease() {
    std::lock_guard<std::mutex> lock(mutex_);
    --open_;
  }
  PoolLease(const PoolLease&) = delete;
  PoolLease& operator=(const PoolLease&) = delete;

 private:
  static inline std::mutex mutex_;
  static inline int open_ = 0;   // engines alive in this process
};

// Manifest delegate name -> the name its ExecuTorch backend registers under.
const std::map<std::string, std::string> kDelegateBackends = {
    {"xnnpack", "XnnpackBackend"}, {"qnn", "QnnBackend"}, {"coreml", "CoreMLBackend"}};

// A float32 tensor input (or output) of a method, as its program declares it.
std::vector<int> tensor_shape(const et::MethodMeta& meta, size_t index, bool input, const std::string& file) {
  const std::string what = file + ": method '" + meta.name() + "' " + (input ? "input " : "output ") +
                           std::to_string(index);
  auto tag = input ? meta.input_tag(index) : meta.output_tag(index);
  auto info = input ? meta.input_tensor_meta(index) : meta.output_tensor_meta(index);
  if (!tag.ok() || *tag != et::Tag::Tensor || !info.ok()) throw Error(what + " is not a tensor");
  if (info->scalar_type() != executorch::aten::ScalarType::Float) throw Error(what + " is not float32");
  const auto sizes = info->sizes();
  return std::vector<int>(sizes.begin(), sizes.end());
}

class ExecuTorchEngine : public Engine {
 public:
  ExecuTorchEngine(const std::string& artifacts, const Json& manifest, int threads) : pool_(threads) {
    const Json& versions = field(manifest, "versions", "manifest.json");
    const std::string built = versions.contains("executorch") ? text(versions["executorch"], "versions.executorch") : "";
    if (base_version(built) != base_version(EDGE4K_EXECUTORCH_VERSION) &&
        base_version(EDGE4K_EXECUTORCH_VERSION) != "unknown")
      throw Error(artifacts + " was built with executorch " + built + ", but this runner links executorch " +
                  EDGE4K_EXECUTORCH_VERSION + "; recompile the build or rebuild the runner");
    if (manifest.contains("delegate") && manifest["delegate"].is_string()) {
      delegate_ = manifest["delegate"].get<std::string>();
      const std::string& delegate = delegate_;
      const auto it = kDelegateBackends.find(delegate);
      const auto have = registered_backends();
      if (it != kDelegateBackends.end() && std::find(have.begin(), have.end(), it->second) == have.end()) {
        std::string list;
        for (const auto& b : have) list += (list.empty() ? "" : ", ") + b;
        throw Error(artifacts + " needs ExecuTorch's " + it->second + " (delegate " + delegate +
                    "), which is not linked into this runner (it has: " + (list.empty() ? "none" : list) + ")");
      }
    }
    std::map<std::string, std::string> hashed;
    for (const auto& [stage, entry] : field(manifest, "stages", "manifest.json").items()) {
      const std::string file = artifacts + "/" + text(field(entry, "file", stage), stage + " file");
      check_digest(file, entry, stage, &hashed);
      if (!modules_.count(file)) {
        modules_[file] = std::make_unique<Module>(file, Module::LoadMode::Mmap);
        // A build folder is untrusted input: the flatbuffer is verified whole before anything
        // reads it (the Python runtime does the same); minimal verification crashed on damaged files.
        const et::Error err = modules_[file]->load(et::Program::Verification::InternalConsistency);
        if (err != et::Error::Ok)
          throw Error("ExecuTorch cannot load " + file + " (" + et::to_string(err) + "): not a valid .pte program");
        weight_bytes_ += static_cast<long long>(std::filesystem::file_size(file));
      }
      Module& module = *modules_[file];
      Stage s{&module, text(field(entry, "method", stage), stage + " method"), {}, Json()};
      s.signature.file = file;
      if (entry.contains("ops_outside_delegate")) s.outside = entry["ops_outside_delegate"];
      const et::Error err = module.load_method(s.method);
      if (err != et::Error::Ok)
        throw Error("ExecuTorch cannot load method '" + s.method + "' (" + stage + ") from " + file + ": " +
                    et::to_string(err));
      auto meta = module.method_meta(s.method);
      if (!meta.ok()) throw Error(file + ": no metadata for method '" + s.method + "' (" + stage + ")");
      for (size_t i = 0; i < meta->num_inputs(); ++i) s.signature.inputs.push_back(tensor_shape(*meta, i, true, file));
      if (meta->num_outputs() < 1) throw Error(file + ": method '" + s.method + "' (" + stage + ") has no output");
      s.signature.output = tensor_shape(*meta, 0, false, file);
      for (size_t i = 0; i < meta->num_memory_planned_buffers(); ++i) {
        auto size = meta->memory_planned_buffer_size(i);
        if (size.ok()) arena_bytes_ += *size;
      }
      stages_[stage] = std::move(s);
    }
  }

  Tensor run(const std::string& stage, const std::vector<const float*>& inputs) override {
    auto it = stages_.find(stage);
    if (it == stages_.end()) throw Error("the build has no stage '" + stage + "'");
    const Stage& s = it->second;
    const auto& shapes = s.signature.inputs;
    if (inputs.size() != shapes.size())
      throw Error(stage + " takes " + std::to_string(shapes.size()) + " inputs, got " + std::to_string(inputs.size()));
    std::vector<executorch::extension::TensorPtr> tensors;
    std::vector<et::EValue> values;
    for (size_t i = 0; i < inputs.size(); ++i) {
      std::vector<executorch::aten::SizesType> sizes(shapes[i].begin(), shapes[i].end());
      tensors.push_back(executorch::extension::from_blob(const_cast<float*>(inputs[i]), sizes));
      values.emplace_back(*tensors.back());
    }
    auto result = s.module->execute(s.method, values);
    if (!result.ok()) throw Error("ExecuTorch failed to run " + stage + ": " + et::to_string(result.error()));
    if (result->empty() || !result->at(0).isTensor()) throw Error(stage + " returned no tensor");
    const auto& out = result->at(0).toTensor();
    if (out.scalar_type() != executorch::aten::ScalarType::Float)
      throw Error(stage + " returned a non-float32 tensor");
    // Copy: the output lives in the method's planned arena, which the next call reuses.
    Tensor t;
    t.shape.assign(out.sizes().begin(), out.sizes().end());
    t.data.assign(out.const_data_ptr<float>(), out.const_data_ptr<float>() + out.numel());
    return t;
  }

  Signature signature(const std::string& stage) const override {
    const auto it = stages_.find(stage);
    if (it == stages_.end()) throw Error("the build has no stage '" + stage + "'");
    return it->second.signature;
  }
  long long planned_arena_bytes() const override { return arena_bytes_; }
  // The .pte files' size, weights included (backends/xnnpack/runtime.py; the manifest's
  // fp32_weight_bytes is the eager model's, not the build's).
  long long weight_bytes() const override { return weight_bytes_; }
  int threads() const override {
    auto* pool = executorch::extension::threadpool::get_threadpool();
    return pool ? static_cast<int>(pool->get_thread_count()) : 1;
  }
  std::string name() const override { return "executorch"; }
  Json about() const override { return executorch_about(); }
  Json placement(const std::string& stage) const override {
    const auto it = stages_.find(stage);
    Json p = {{"engine", "executorch"}, {"accelerator", delegate_.empty() ? Json() : Json(delegate_)}};
    if (it != stages_.end() && !it->second.outside.is_null()) p["ops_outside_delegate"] = it->second.outside;
    return p;
  }

 private:
  struct Stage {
    Module* module;
    std::string method;
    Signature signature;   // from the program's MethodMeta
    Json outside;   // the manifest's ops_outside_delegate
  };
  PoolLease pool_;   // first: held until the modules below are gone
  std::map<std::string, std::unique_ptr<Module>> modules_;
  std::map<std::string, Stage> stages_;
  long long arena_bytes_ = 0, weight_bytes_ = 0;
  std::string delegate_;
};

}  // namespace

std::unique_ptr<Engine> open_executorch(const std::string& artifacts, const Json& manifest, int threads) {
  et::runtime_init();
  return std::make_unique<ExecuTorchEngine>(artifacts, manifest, threads);
}

Json executorch_about() {
  et::runtime_init();
  Json backends = Json::array();
  for (const auto& b : registered_backends()) backends.push_back(b);
  return Json{{"executorch", EDGE4K_EXECUTORCH_VERSION}, {"backends", backends}};
}

}  // namespace edge4k
