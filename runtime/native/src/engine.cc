#include "engine.h"

#include "edge4k_kernels.h"

namespace edge4k {

std::vector<std::string> engine_names() {
  std::vector<std::string> names;
#ifdef EDGE4K_WITH_EXECUTORCH
  names.push_back("executorch");
#endif
  return names;
}

std::unique_ptr<Engine> open_engine(const std::string& artifacts, const Json& manifest, int threads) {
  const std::string backend = manifest["backend"].str("manifest backend");
#ifdef EDGE4K_WITH_EXECUTORCH
  if (backend == "executorch") return open_executorch(artifacts, manifest, threads);
#endif
  std::string have;
  for (const auto& n : engine_names()) have += (have.empty() ? "" : ", ") + n;
  throw Error(artifacts + " is a build for backend '" + backend + "' (target " + manifest["target"].str() +
              "), which this edge4k_runner cannot run (it has: " + (have.empty() ? "none" : have) + ")");
}

}  // namespace edge4k
