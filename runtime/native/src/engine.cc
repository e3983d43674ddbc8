#include "engine.h"

namespace edge4k {

std::vector<std::string> engine_names() {
  std::vector<std::string> names;
#ifdef EDGE4K_WITH_EXECUTORCH
  names.push_back("executorch");
#endif
  names.push_back("onnxruntime");
  return names;
}

std::unique_ptr<Engine> open_engine(const std::string& artifacts, const Json& manifest, int threads) {
  const std::string backend = text(field(manifest, "backend", "manifest.json"), "manifest backend");
#ifdef EDGE4K_WITH_EXECUTORCH
  if (backend == "executorch") return open_executorch(artifacts, manifest, threads);
#endif
  // android-qnn builds: per-stage EPContext models, which the Python side runs as qnn-htp-sim.
  if (backend == "qnn-htp-sim") return open_onnxruntime(artifacts, manifest, threads);
  std::string have;
  for (const auto& n : engine_names()) have += (have.empty() ? "" : ", ") + n;
  const std::string target = manifest.contains("target") && manifest["target"].is_string()
                                 ? manifest["target"].get<std::string>() : "?";
  throw Error(artifacts + " is a build for backend '" + backend + "' (target " + target +
              "), which this edge4k_runner cannot run (it has: " + have + ")");
}

}  // namespace edge4k
