#include "pipeline.h"

#include <algorithm>
#include <cmath>

#include "field_limits.h"
#include "image_io.h"

#ifndef EDGE4K_VERSION
#define EDGE4K_VERSION "0.0.0"
#endif

namespace edge4k {
namespace {

std::string basename_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string shape_text(const std::vector<int>& shape) { return Json(shape).dump(); }

void expect_shape(const Tensor& t, const std::vector<int>& shape, const std::string& stage) {
  if (t.shape != shape || t.data.size() != [&] { size_t n = 1; for (int d : shape) n *= d; return n; }())
    throw Error(stage + " returned shape " + shape_text(t.shape) + ", expected " + shape_text(shape));
}

}  // namespace

Build open_build(const std::string& dir) {
  Build b;
  b.dir = dir;
  const std::string path = dir + "/manifest.json";
  std::string text_;
  try {
    text_ = read_file(path);
  } catch (const Error& e) {
    throw BuildError(e.what());
  }
  try {
    b.manifest = parse_json(text_, path);
    const Json& m = b.manifest;
    const Json* schema = m.is_object() && m.contains("schema") ? &m["schema"] : nullptr;
    if (schema && *schema == "edge4k.manifest/1")   // its decoder returned base + residual: the base twice
      throw Error(path + ": built before the decoder returned its residual (edge4k.manifest/1); recompile it");
    if (!schema || *schema != "edge4k.manifest/2") throw Error(path + " is not an edge4k.manifest/2 build manifest");
    const Json& cfg = field(m, "config", path);
    const Json& t = field(m, "tiling", path);
    auto config = [&](const char* key) { return limited_integer(field(cfg, key, path + " config"), "config", key, path); };
    auto tiling = [&](const char* key) { return limited_integer(field(t, key, path + " tiling"), "tiling", key, path); };
    b.compression = config("compression");
    b.thumb_size = config("thumb_size");
    b.latent_channels = config("latent_channels");
    b.global_dim = config("global_dim");
    b.raw_skip = boolean(field(cfg, "raw_skip", path + " config"), "config.raw_skip");
    b.native = boolean(field(t, "native", path + " tiling"), "tiling.native");
    b.batch = tiling("batch");
    b.tile = b.native ? 0 : tiling("tile");
    b.overlap = tiling("overlap");
    const Json& padded = field(t, "padded", path + " tiling");
    if (!padded.is_array() || padded.size() != 2) throw Error(path + ": tiling.padded must be [height, width]");
    for (int i : {0, 1}) b.padded[i] = limited_integer(padded[i], "tiling", "padded", path);
    for (const auto& [stage, entry] : field(m, "stages", path).items()) {
      const std::string& file = text(field(entry, "file", path + " stages." + stage), "stages." + stage + ".file");
      if (file.empty() || file.front() == '/' || ("/" + file + "/").find("/../") != std::string::npos)
        throw Error(path + ": stages." + stage + ".file '" + file + "' is not a file name inside the build");
    }
    const int th = b.native ? b.padded[0] : b.tile, tw = b.native ? b.padded[1] : b.tile;
    if (th % b.compression || tw % b.compression)
      throw Error(path + ": tile " + std::to_string(tw) + "x" + std::to_string(th) +
                  " is not a multiple of config.compression " + std::to_string(b.compression));
  } catch (const Json::exception& e) {
    throw BuildError(path + " is malformed: " + e.what());
  } catch (const Error& e) {
    throw BuildError(e.what());
  }
  return b;
}

std::map<std::string, Signature> buffer_shapes(const Build& b) {
  const int th = b.native ? b.padded[0] : b.tile, tw = b.native ? b.padded[1] : b.tile, f = b.compression;
  const std::vector<int> packed{b.batch, 4, th / 2, tw / 2}, latent{b.batch, b.latent_channels, th / f, tw / f},
      g{1, b.global_dim};
  return {{"global", {{{1, 4, b.thumb_size, b.thumb_size}, {1, META_SIZE}}, g, ""}},
          {"encoder", {{packed}, latent, ""}},
          {"backbone", {{latent, g}, latent, ""}},
          {"decoder", {{latent, packed}, {b.batch, 3, th, tw}, ""}}};
}

Pipeline::Pipeline(const std::string& artifacts, int threads, const std::string& expect_preset, Look look)
    : build_(open_build(artifacts)), look_(look) {
  set_kernel_threads(threads);   // the CPU stages use the engine's thread count (0: every core)
  if (!expect_preset.empty()) {
    const std::string preset = build_.manifest.value("preset", "");
    if (preset != expect_preset)
      throw BuildError(artifacts + " is a build of preset " + preset + ", not " + expect_preset);
  }
  shapes_ = buffer_shapes(build_);
  engine_ = open_engine(artifacts, build_.manifest, threads);
  check_signatures();
}

namespace {

// The manifest field each dimension of buffer_shapes() comes from; index -1: the output.
std::vector<std::string> dimension_fields(const Build& b, const std::string& stage, int index) {
  const std::string tile = b.native ? "tiling.padded" : "tiling.tile", latent = tile + " / config.compression";
  const std::vector<std::string> packed{"tiling.batch", "4 packed channels", tile + " / 2", tile + " / 2"},
      z{"tiling.batch", "config.latent_channels", latent, latent}, g{"1", "config.global_dim"};
  if (stage == "global")
    return index == 0 ? std::vector<std::string>{"1", "4 packed channels", "config.thumb_size", "config.thumb_size"}
                      : index == 1 ? std::vector<std::string>{"1", "the meta vector's 5 values"} : g;
  if (stage == "encoder") return index == 0 ? packed : z;
  if (stage == "backbone") return index == 1 ? g : z;
  return index == 0 ? z : index == 1 ? packed : std::vector<std::string>{"tiling.batch", "3 colours", tile, tile};
}

// "" when the shapes agree, else which manifest field the first differing dimension comes from.
std::string differing_field(const std::vector<int>& got, const std::vector<int>& want,
                            const std::vector<std::string>& fields) {
  if (got.size() != want.size()) return "the rank";
  for (size_t d = 0; d < got.size(); ++d)
    if (got[d] != want[d]) return fields[d];
  return "";
}

}  // namespace

void Pipeline::check_signatures() const {
  const std::string manifest = build_.dir + "/manifest.json";
  const Json& stages = field(build_.manifest, "stages", manifest);
  for (const char* stage : {"global", "encoder", "backbone", "decoder"}) {
    const Signature& want = shapes_.at(stage);
    const Signature got = engine_->signature(stage);
    const std::string where = got.file + ": " + stage;
    if (got.inputs.size() != want.inputs.size())
      throw BuildError(where + " takes " + std::to_string(got.inputs.size()) + " inputs in the program, but the runner "
                       "passes " + std::to_string(want.inputs.size()));
    const Json& declared = field(field(stages, stage, manifest), "inputs", manifest + " stages." + stage);
    if (!declared.is_array() || declared.size() != want.inputs.size())
      throw BuildError(manifest + ": stages." + stage + ".inputs must list " + std::to_string(want.inputs.size()) +
                       " inputs");
    for (size_t i = 0; i < want.inputs.size(); ++i) {
      const std::string what = where + " input " + std::to_string(i) + " is " + shape_text(got.inputs[i]) +
                               " in the program, but ";
      const Json& shape = field(declared[i], "shape", manifest + " stages." + stage + ".inputs");
      if (!shape.is_array() || shape != Json(got.inputs[i]))
        throw BuildError(what + shape.dump() + " in manifest.json (stages." + stage + ".inputs)");
      const std::string differs = differing_field(got.inputs[i], want.inputs[i], dimension_fields(build_, stage, i));
      if (!differs.empty())
        throw BuildError(what + shape_text(want.inputs[i]) + " from " + differs + " in manifest.json");
    }
    const std::string differs = differing_field(got.output, want.output, dimension_fields(build_, stage, -1));
    if (!differs.empty())
      throw BuildError(where + " output is " + shape_text(got.output) + " in the program, but " +
                       shape_text(want.output) + " from " + differs + " in manifest.json");
  }
}

Tensor Pipeline::run(const std::string& stage, const std::vector<const float*>& inputs) {
  Tensor t = engine_->run(stage, inputs);
  expect_shape(t, shapes_.at(stage).output, stage);
  return t;
}

void Pipeline::reset_profile() {
  timer_ = StageTimer();
  runs_ = 0;
}

void Pipeline::network(const FrontendOutput& in, const TilePlan& plan, int frame_height, int frame_width) {
  const Build& b = build_;
  Tensor g;
  {
    Scope s(&timer_, "global");
    g = run("global", {in.thumb.data(), in.meta.data()});
  }
  const int th = plan.tile_height, tw = plan.tile_width, pw = plan.padded_width / 2, ph = plan.padded_height / 2;
  const size_t packed_tile = static_cast<size_t>(4) * (th / 2) * (tw / 2), rgb_tile = static_cast<size_t>(3) * th * tw;
  {
    Scope s(&timer_, "postprocess");   // blending's share: the zeroed frame it accumulates into
    image_.assign(static_cast<size_t>(3) * frame_height * frame_width, 0.0f);
  }
  Blender blender(plan, 3, Window{in.top, in.left, frame_height, frame_width}, image_.data());
  std::vector<float> x(packed_tile * b.batch);
  for (size_t first = 0; first < plan.origins.size(); first += b.batch) {
    const size_t count = std::min<size_t>(b.batch, plan.origins.size() - first);
    {
      Scope s(&timer_, "raw_preprocess");
      for (int k = 0; k < b.batch; ++k) {   // fixed batch shape: repeat the last tile
        const auto [y0, x0] = plan.origins[first + std::min<size_t>(k, count - 1)];
        float* dst = x.data() + k * packed_tile;
        for (int c = 0; c < 4; ++c)
          for (int i = 0; i < th / 2; ++i) {
            const float* src = packed_.data() + (static_cast<size_t>(c) * ph + y0 / 2 + i) * pw + x0 / 2;
            std::copy(src, src + tw / 2, dst + (static_cast<size_t>(c) * (th / 2) + i) * (tw / 2));
          }
      }
    }
    Tensor z, rgb;
    {
      Scope s(&timer_, "encoder");
      z = run("encoder", {x.data()});
    }
    {
      Scope s(&timer_, "backbone");
      z = run("backbone", {z.data.data(), g.data.data()});
    }
    {
      Scope s(&timer_, "decoder");
      rgb = run("decoder", {z.data.data(), x.data()});
      if (b.raw_skip)   // the decoder returned the residual; the classical base is added in fp32
        add_mhc_base(x.data(), static_cast<int>(count), th / 2, tw / 2, rgb.data.data());
    }
    {
      Scope s(&timer_, "postprocess");
      for (size_t k = 0; k < count; ++k)
        blender.add(rgb.data.data() + k * rgb_tile, plan.origins[first + k].first, plan.origins[first + k].second);
    }
  }
}

void Pipeline::set_finishing(const Finishing& finishing) {
  check_finishing(finishing);
  finishing_ = finishing;
}

void Pipeline::render(const BayerFrame& frame, int bits, std::vector<uint8_t>* pixels) {
  if (bits != 8 && bits != 16 && bits != 32)
    throw Error("bit depth must be 8, 16 or 32 (float), got " + std::to_string(bits));
  check_frame(frame);
  const Build& b = build_;
  TilePlan plan;
  try {
    plan = plan_frame(frame.height, frame.width, b.compression, b.tile, b.overlap, b.native);
  } catch (const Error& e) {
    throw BuildError(std::string(e.what()) + " of this build (" + basename_of(b.dir) + ")");
  }
  if (b.native && (plan.padded_height != b.padded[0] || plan.padded_width != b.padded[1]))
    throw BuildError("this native build takes frames that pad to " + std::to_string(b.padded[1]) + "x" +
                     std::to_string(b.padded[0]) + " (up to " + std::to_string(b.padded[1] - PHASE_PAD) + "x" +
                     std::to_string(b.padded[0] - PHASE_PAD) + "); the input is " + std::to_string(frame.width) +
                     "x" + std::to_string(frame.height) + ". Compile for this resolution or use a tiled build");
  timer_.start_run();
  FrontendOutput in;
  {
    Scope s(&timer_, "raw_preprocess");
    packed_.resize(static_cast<size_t>(4) * (plan.padded_height / 2) * (plan.padded_width / 2));
    in = frontend(frame, plan.padded_height, plan.padded_width, b.thumb_size, packed_.data());
  }
  network(in, plan, frame.height, frame.width);
  {
    Scope s(&timer_, "postprocess");
    pixels->resize(static_cast<size_t>(frame.width) * frame.height * 3 * (bits / 8));
    postprocess(image_.data(), frame, in.metered, look_, bits, pixels->data(), finishing_);
  }
  timer_.end_run();
  ++runs_;
  last_plan_ = plan;
  last_width_ = frame.width;
  last_height_ = frame.height;
  last_output_ = output_size(frame);
  // the finishing gain as runtime/pipeline.py records it: the look's (1 for neutral) times 2^ev
  last_exposure_ = (look_ == Look::Natural ? in.metered : 1.0) * std::exp2(finishing_.ev);
}

Json Pipeline::profile() const {
  if (runs_ == 0) throw Error("no frame has been rendered since the profile was reset");
  const Json& m = build_.manifest;
  const TilePlan& plan = last_plan_;
  Json device = device_info();
  device["backend"] = engine_->name();
  device["delegate"] = m.contains("delegate") ? m["delegate"] : Json();
  device["threads"] = engine_->threads();
  Json versions = {{"edge4k_runner", EDGE4K_VERSION}};
  const Json engine_about = engine_->about();
  for (const auto& [k, v] : engine_about.items())
    if (v.is_string()) versions[k] = v;
  Json stages = Json::object();
  for (const char* stage : {"global", "encoder", "backbone", "decoder"}) stages[stage] = engine_->placement(stage);
  const long long arena = engine_->planned_arena_bytes();
  Json timing = {{"runs", runs_}, {"clock", "std::chrono::steady_clock"}};
  const std::string note = engine_->emulation_note();
  if (!note.empty()) {
    timing["emulated"] = true;
    timing["note"] = note;
  }
  return Json{
      {"resolution", {{"width", last_width_}, {"height", last_height_}}},
      {"output", {{"width", last_output_.first}, {"height", last_output_.second}, {"look", look_name(look_)},
                  {"exposure_gain", std::round(last_exposure_ * 1e6) / 1e6},
                  {"output_space", output_space_name(finishing_.space)},
                  {"colour", {{"exposure_ev", finishing_.ev}, {"highlights", highlights_name(finishing_.highlights)}}}}},
      {"tiling", {{"enabled", !plan.native}, {"tile", plan.native ? Json() : Json(plan.tile_height)},
                  {"overlap", plan.native ? Json() : Json(plan.overlap)},
                  {"tiles", static_cast<int>(plan.origins.size())}, {"batch", build_.batch},
                  {"padded", {plan.padded_height, plan.padded_width}}}},
      {"latent_compression", build_.compression},
      {"timing", timing},
      {"latency_ms", timer_.summary_ms()},
      {"memory", {{"peak_rss_bytes", std::max(peak_rss_bytes(), 0LL)},
                  {"peak_rss_source", "VmHWM in /proc/self/status"},
                  {"planned_arena_bytes", arena < 0 ? Json() : Json(arena)},
                  {"weight_bytes", engine_->weight_bytes()},
                  {"estimated_tile_bytes", plan.native && arena >= 0 ? Json(arena) : Json()}}},
      {"device", device},
      {"model", {{"preset", m.value("preset", "")}, {"config_hash", m.value("config_hash", "")},
                 {"precision", m.value("precision", "")},
                 {"weights", "build:" + basename_of(build_.dir) + " (" + m.value("weights", "") + ")"}}},
      {"stages", stages},
      {"versions", versions},
  };
}

}  // namespace edge4k
