#include "engine.h"

#include "image_io.h"

namespace edge4k {

void check_digest(const std::string& file, const Json& entry, const std::string& stage,
                  std::map<std::string, std::string>* hashed) {
  if (!entry.is_object() || !entry.contains("file_sha256")) return;
  const std::string& want = text(entry["file_sha256"], stage + " file_sha256");
  auto it = hashed->find(file);
  if (it == hashed->end()) it = hashed->emplace(file, sha256_file(file)).first;
  if (it->second != want)
    throw Error(file + ": sha256 " + it->second + " is not the " + want + " its build's manifest.json records for " +
                stage + "; the file was damaged or replaced");
}

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
