// edge4k_runner: the phone-side thin runtime. Reads a compiled build (manifest.json
// + its program), a RAW frame handed over as a uint16 Bayer buffer plus a JSON
// sidecar, runs the six stages with per-stage timing and writes the RGB image and
// an edge4k.profile/1 JSON, like `edge4k run` does on the host.
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>

#include "edge4k_kernels.h"
#include "engine.h"
#include "image_io.h"
#include "json.h"
#include "measure.h"

#ifndef EDGE4K_VERSION
#define EDGE4K_VERSION "0.0.0"
#endif

namespace edge4k {
namespace {

const char* kUsage =
    "usage: edge4k_runner --artifacts DIR --input FRAME.json -o OUT.png|OUT.ppm [--profile OUT.json]\n"
    "                     [--runs N] [--warmup N] [--threads N] [--idle-seconds S] [--sysfs-root DIR]\n"
    "       edge4k_runner --about\n"
    "FRAME.json is the sidecar `edge4k` writes beside the uint16 Bayer buffer it decoded from a RAW file.\n";

struct Options {
  std::string artifacts, input, output, profile, sysfs = "/sys";
  int runs = 1, warmup = 0, threads = 0;
  double idle_seconds = 2.0;
  bool about = false;
};

struct Usage : Error {
  using Error::Error;
};

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Usage(a + " needs a value");
      return argv[++i];
    };
    auto integer = [&](int minimum) {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end || v.empty() || n < minimum) throw Usage(a + " must be an integer >= " + std::to_string(minimum));
      return static_cast<int>(n);
    };
    if (a == "--artifacts") o.artifacts = value();
    else if (a == "--input") o.input = value();
    else if (a == "-o" || a == "--output") o.output = value();
    else if (a == "--profile") o.profile = value();
    else if (a == "--runs") o.runs = integer(1);
    else if (a == "--warmup") o.warmup = integer(0);
    else if (a == "--threads") o.threads = integer(1);
    else if (a == "--idle-seconds") o.idle_seconds = std::atof(value().c_str());
    else if (a == "--sysfs-root") o.sysfs = value();
    else if (a == "--about") o.about = true;
    else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else throw Usage("unknown argument " + a);
  }
  if (!o.about && (o.artifacts.empty() || o.input.empty() || o.output.empty()))
    throw Usage("--artifacts, --input and -o are required");
  return o;
}

std::string dirname_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string basename_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string now_iso() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

// The sidecar (schema edge4k.bayer/1) and its Bayer buffer.
struct Input {
  Json sidecar;
  std::string sidecar_path, data_path;
};

Input open_input(const std::string& path) {
  Input in;
  in.sidecar_path = path;
  in.sidecar = Json::parse(read_file(path));
  if (!in.sidecar.has("schema") || in.sidecar["schema"].str() != "edge4k.bayer/1")
    throw Error(path + " is not an edge4k.bayer/1 sidecar");
  const std::string data = in.sidecar["data"].str("sidecar data");
  in.data_path = data.front() == '/' ? data : dirname_of(path) + "/" + data;
  return in;
}

BayerFrame read_frame(const Input& in) {
  const Json& s = in.sidecar;
  BayerFrame f;
  f.width = s["width"].integer("width");
  f.height = s["height"].integer("height");
  f.cfa = s["cfa"].str("cfa");
  for (int c = 0; c < 4; ++c) f.black_level[c] = s["black_level"].array("black_level").at(c).number();
  f.white_level = s["white_level"].number("white_level");
  for (int c = 0; c < 3; ++c) f.wb_gains[c] = s["wb_gains"].array("wb_gains").at(c).number();
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) f.srgb_from_cam[r * 3 + c] = s["srgb_from_cam"].array().at(r).array().at(c).number();
  const std::string bytes = read_file(in.data_path);
  const size_t n = static_cast<size_t>(f.width) * f.height;
  if (bytes.size() != n * 2)
    throw Error(in.data_path + " holds " + std::to_string(bytes.size()) + " bytes; a " + std::to_string(f.width) +
                "x" + std::to_string(f.height) + " uint16 frame needs " + std::to_string(n * 2));
  f.bayer.resize(n);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < n; ++i) f.bayer[i] = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));   // little-endian
  return f;
}

struct Build {
  Json manifest;
  int compression = 0, thumb_size = 0, batch = 1, tile = 0, overlap = 0;
  bool native = false;
  int padded[2] = {0, 0};
};

Build open_build(const std::string& dir) {
  Build b;
  b.manifest = Json::parse(read_file(dir + "/manifest.json"));
  if (!b.manifest.has("schema") || b.manifest["schema"].str() != "edge4k.manifest/1")
    throw Error(dir + "/manifest.json is not an edge4k.manifest/1 build manifest");
  const Json& cfg = b.manifest["config"];
  const Json& t = b.manifest["tiling"];
  b.compression = cfg["compression"].integer();
  b.thumb_size = cfg["thumb_size"].integer();
  b.native = t["native"].boolean();
  b.batch = t["batch"].integer();
  b.tile = b.native ? 0 : t["tile"].integer();
  b.overlap = t["overlap"].integer();
  b.padded[0] = t["padded"].array().at(0).integer();
  b.padded[1] = t["padded"].array().at(1).integer();
  return b;
}

TilePlan plan_for(const Build& b, int height, int width) {
  TilePlan plan = plan_tiles(height, width, b.compression, b.tile, b.overlap, b.native);
  if (b.native && (plan.padded_height != b.padded[0] || plan.padded_width != b.padded[1]))
    throw Error("this native build takes frames of " + std::to_string(b.padded[1]) + "x" + std::to_string(b.padded[0]) +
                " (after padding); the input is " + std::to_string(width) + "x" + std::to_string(height) +
                ". Compile for this resolution or use a tiled build");
  return plan;
}

void expect_shape(const Tensor& t, const std::vector<int>& shape, const std::string& stage) {
  if (t.shape != shape) {
    std::string got, want;
    for (int d : t.shape) got += std::to_string(d) + " ";
    for (int d : shape) want += std::to_string(d) + " ";
    throw Error(stage + " returned shape [ " + got + "], expected [ " + want + "]");
  }
}

struct RunResult {
  std::vector<float> image;   // (3, H, W)
  TilePlan plan;
  BayerFrame frame;
};

// One frame through the six stages; timer is null for warm-up runs.
RunResult process(const Input& input, const Build& b, Engine& engine, StageTimer* timer) {
  RunResult r;
  std::vector<float> thumb, meta, padded;
  {
    Scope s(timer, "raw_preprocess");
    r.frame = read_frame(input);
    r.plan = plan_for(b, r.frame.height, r.frame.width);
    const auto packed = pack(r.frame);
    thumb = thumbnail(packed.data(), 4, r.frame.height / 2, r.frame.width / 2, b.thumb_size);
    meta = meta_vector(r.frame);
    padded = pad_reflect(packed.data(), 4, r.frame.height / 2, r.frame.width / 2, r.plan.padded_height / 2,
                         r.plan.padded_width / 2);
  }
  Tensor g;
  {
    Scope s(timer, "global");
    g = engine.run("global", {thumb.data(), meta.data()});
  }
  const TilePlan& plan = r.plan;
  const int th = plan.tile_height, tw = plan.tile_width, pw = plan.padded_width / 2, ph = plan.padded_height / 2;
  const size_t packed_tile = static_cast<size_t>(4) * (th / 2) * (tw / 2), rgb_tile = static_cast<size_t>(3) * th * tw;
  Blender blender(plan);
  std::vector<float> x(packed_tile * b.batch);
  for (size_t first = 0; first < plan.origins.size(); first += b.batch) {
    const size_t count = std::min<size_t>(b.batch, plan.origins.size() - first);
    {
      Scope s(timer, "raw_preprocess");
      for (int k = 0; k < b.batch; ++k) {   // fixed batch shape: repeat the last tile
        const auto [y0, x0] = plan.origins[first + std::min<size_t>(k, count - 1)];
        float* dst = x.data() + k * packed_tile;
        for (int c = 0; c < 4; ++c)
          for (int i = 0; i < th / 2; ++i) {
            const float* src = padded.data() + (static_cast<size_t>(c) * ph + y0 / 2 + i) * pw + x0 / 2;
            std::copy(src, src + tw / 2, dst + (static_cast<size_t>(c) * (th / 2) + i) * (tw / 2));
          }
      }
    }
    Tensor z, rgb;
    {
      Scope s(timer, "encoder");
      z = engine.run("encoder", {x.data()});
    }
    {
      Scope s(timer, "backbone");
      z = engine.run("backbone", {z.data.data(), g.data.data()});
    }
    {
      Scope s(timer, "decoder");
      rgb = engine.run("decoder", {z.data.data(), x.data()});
    }
    expect_shape(rgb, {b.batch, 3, th, tw}, "decoder");
    {
      Scope s(timer, "postprocess");
      for (size_t k = 0; k < count; ++k)
        blender.add(rgb.data.data() + k * rgb_tile, plan.origins[first + k].first, plan.origins[first + k].second);
    }
  }
  {
    Scope s(timer, "postprocess");
    r.image = blender.result();
  }
  return r;
}

int run(const Options& o) {
  if (o.about) {
    Json about(Json::Object{{"edge4k_runner", EDGE4K_VERSION}});
    Json engines(Json::Array{});
    for (const auto& e : engine_names()) engines.push(e);
    about.set("engines", engines);
#ifdef EDGE4K_WITH_EXECUTORCH
    const Json et = executorch_about();
    for (const auto& [k, v] : et.object()) about.set(k, v);
#endif
    std::cout << about.dump() << "\n";
    return 0;
  }
  const int bits = bit_depth_for(o.output);
  const Build build = open_build(o.artifacts);
  const Input input = open_input(o.input);
  auto engine = open_engine(o.artifacts, build.manifest, o.threads);

  for (int i = 0; i < o.warmup; ++i) process(input, build, *engine, nullptr);
  const Json thermal_before = thermal_snapshot(o.sysfs);
  PowerSampler power(o.sysfs + "/class/power_supply");
  power.measure_idle(o.idle_seconds);
  StageTimer timer;
  RunResult last;
  std::vector<unsigned char> pixels;
  const auto t0 = StageTimer::Clock::now();
  power.start();
  for (int i = 0; i < o.runs; ++i) {
    timer.start_run();
    last = process(input, build, *engine, &timer);
    {
      Scope s(&timer, "postprocess");
      pixels.resize(static_cast<size_t>(last.frame.width) * last.frame.height * 3 * (bits / 8));
      quantise(last.image.data(), last.frame.height, last.frame.width, bits, pixels.data());
    }
    timer.end_run();
  }
  const double seconds = std::chrono::duration<double>(StageTimer::Clock::now() - t0).count();
  Json power_report = power.stop(o.runs, seconds);
  const Json thermal = thermal_report(thermal_before, thermal_snapshot(o.sysfs));

  const int w = last.frame.width, h = last.frame.height;
  const std::string image = bits == 8 ? encode_png8(pixels.data(), w, h)
                                      : encode_ppm16(reinterpret_cast<const uint16_t*>(pixels.data()), w, h);
  write_file_atomic(o.output, image);
  std::cerr << "wrote " << o.output << "\n";
  if (o.profile.empty()) return 0;

  const Json& m = build.manifest;
  const Json& src = input.sidecar.has("source") ? input.sidecar["source"] : Json();
  const std::string buffer_sha = sha256_file(input.data_path);
  const TilePlan& plan = last.plan;
  long long weight_bytes = 0;
  for (const auto& [stage, entry] : m["stages"].object())
    if (entry.has("weight_bytes")) weight_bytes += static_cast<long long>(entry["weight_bytes"].number());
  Json device = device_info();
  device.set("backend", engine->name());
  device.set("delegate", m["delegate"]);
  device.set("threads", engine->threads());
  Json versions(Json::Object{{"edge4k_runner", EDGE4K_VERSION}});
  const Json engine_about = engine->about();
  for (const auto& [k, v] : engine_about.object())
    if (v.is_string()) versions.set(k, v);
  const Json profile(Json::Object{
      {"schema", "edge4k.profile/1"},
      {"created", now_iso()},
      {"input", Json(Json::Object{
                    {"path", src.has("path") ? src["path"] : Json(input.sidecar_path)},
                    {"sha256", src.has("sha256") ? src["sha256"] : Json(buffer_sha)},
                    {"cfa", last.frame.cfa}, {"width", w}, {"height", h},
                    {"buffer", input.data_path}, {"buffer_sha256", buffer_sha}})},
      {"resolution", Json(Json::Object{{"width", w}, {"height", h}})},
      {"tiling", Json(Json::Object{{"enabled", !plan.native}, {"tile", plan.native ? Json() : Json(plan.tile_height)},
                                   {"overlap", plan.native ? Json() : Json(plan.overlap)},
                                   {"tiles", static_cast<int>(plan.origins.size())}, {"batch", build.batch},
                                   {"padded", Json(Json::Array{plan.padded_height, plan.padded_width})}})},
      {"latent_compression", build.compression},
      {"timing", Json(Json::Object{{"warmup", o.warmup}, {"runs", o.runs}, {"clock", "std::chrono::steady_clock"}})},
      {"latency_ms", timer.summary_ms()},
      {"memory", Json(Json::Object{{"peak_rss_bytes", std::max(peak_rss_bytes(), 0LL)},
                                   {"peak_rss_source", "VmHWM in /proc/self/status"},
                                   {"planned_arena_bytes", engine->planned_arena_bytes()},
                                   {"weight_bytes", weight_bytes},
                                   {"estimated_tile_bytes", plan.native ? Json(engine->planned_arena_bytes()) : Json()}})},
      {"power", power_report},
      {"thermal", thermal},
      {"device", device},
      {"model", Json(Json::Object{{"preset", m["preset"]}, {"config_hash", m["config_hash"]},
                                  {"precision", m["precision"]},
                                  {"weights", "build:" + basename_of(o.artifacts) + " (" + m["weights"].str() + ")"}})},
      {"output", Json(Json::Object{{"path", o.output}, {"sha256", sha256_hex(image)}, {"width", w}, {"height", h},
                                   {"bit_depth", bits}})},
      {"versions", versions},
  });
  write_file_atomic(o.profile, profile.dump() + "\n");
  std::cerr << "wrote " << o.profile << "\n";
  return 0;
}

}  // namespace
}  // namespace edge4k

int main(int argc, char** argv) {
  try {
    return edge4k::run(edge4k::parse_args(argc, argv));
  } catch (const edge4k::Usage& e) {
    std::cerr << "edge4k_runner: error: " << e.what() << "\n" << edge4k::kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "edge4k_runner: error: " << e.what() << "\n";
    return 1;
  }
}
