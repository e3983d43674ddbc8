// edge4k_runner: a command line over libedge4k (include/edge4k.h). Reads a compiled
// build, a RAW frame handed over as a uint16 Bayer buffer plus a JSON sidecar, runs
// the six stages with per-stage timing, and writes the RGB image and an
// edge4k.profile/1 JSON, like `edge4k run` does on the host.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>

#include "edge4k.h"
#include "engine.h"
#include "field_limits.h"
#include "image_io.h"
#include "json.h"
#include "measure.h"
#include "postprocess.h"

#ifndef EDGE4K_VERSION
#define EDGE4K_VERSION "0.0.0"
#endif

namespace edge4k {
namespace {

const char* kUsage =
    "usage: edge4k_runner --artifacts DIR --input FRAME.json -o OUT.png|OUT.tif|OUT.jpg|OUT.ppm [--bits 8|16|32]\n"
    "                     [--quality Q]\n"
    "                     [--profile OUT.json] [--runs N] [--warmup N] [--threads N] [--idle-seconds S]\n"
    "                     [--look natural|neutral] [--exposure EV] [--highlights clip|reconstruct]\n"
    "                     [--output-space srgb|display-p3|adobe-rgb|prophoto|rec2020-linear] [--sysfs-root DIR]\n"
    "       edge4k_runner --about\n"
    "FRAME.json is the sidecar `edge4k` writes beside the uint16 Bayer buffer it decoded from a RAW file.\n"
    ".png is 8-bit unless --bits 16, .tif 16-bit unless --bits 8 or 32 (float), .jpg 8-bit (--quality 1-100,\n"
    "default 95), .ppm 16-bit; prophoto and rec2020-linear need 16 bits or float. --exposure: stops (-10..+10)\n"
    "on top of the look. The image embeds its space's ICC profile and the capture's EXIF facts.\n";

struct Options {
  std::string artifacts, input, output, profile, sysfs = "/sys", look = "natural", highlights = "clip",
      output_space = "srgb";
  int runs = 1, warmup = 0, threads = 0, bits = 0, quality = 0;
  double exposure = 0;
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
    // A number within runtime/limits.json's "runner" range for key (--bits: 8 or more).
    auto number = [&](const char* key, bool whole) {
      const std::string v = value();
      char* end = nullptr;
      errno = 0;
      const double n = std::strtod(v.c_str(), &end);
      if (v.empty() || *end || errno || !std::isfinite(n) || (whole && n != std::floor(n)))
        throw Usage(a + " must be " + (whole ? "an integer" : "a number") + ", got '" + v + "'");
      try {
        return key ? check_limit("runner", key, n, a) : n;
      } catch (const Error& e) {
        throw Usage(e.what());
      }
    };
    auto integer = [&](const char* key) { return static_cast<int>(number(key, true)); };
    if (a == "--artifacts") o.artifacts = value();
    else if (a == "--input") o.input = value();
    else if (a == "-o" || a == "--output") o.output = value();
    else if (a == "--profile") o.profile = value();
    else if (a == "--runs") o.runs = integer("runs");
    else if (a == "--warmup") o.warmup = integer("warmup");
    else if (a == "--threads") o.threads = integer("threads");
    else if (a == "--bits") {
      const double bits = number(nullptr, true);
      if (bits != 8 && bits != 16 && bits != 32) throw Usage("--bits must be 8, 16 or 32 (float)");
      o.bits = static_cast<int>(bits);
    }
    else if (a == "--quality") {   // kernels/postprocess.py: check_quality
      const double quality = number(nullptr, true);
      if (quality < 1 || quality > 100) throw Usage(std::string("--quality must be 1-100, got ") + argv[i]);
      o.quality = static_cast<int>(quality);
    }
    else if (a == "--idle-seconds") o.idle_seconds = number("idle_seconds", false);
    else if (a == "--sysfs-root") o.sysfs = value();
    else if (a == "--look") {
      o.look = value();
      if (o.look != "natural" && o.look != "neutral") throw Usage("--look must be natural or neutral");
    }
    else if (a == "--exposure") o.exposure = number(nullptr, false);
    else if (a == "--highlights") o.highlights = value();
    else if (a == "--output-space") o.output_space = value();
    else if (a == "--about") o.about = true;
    else if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else throw Usage("unknown argument " + a);
  }
  if (!o.about && (o.artifacts.empty() || o.input.empty() || o.output.empty()))
    throw Usage("--artifacts, --input and -o are required");
  try {   // the finishing's names and range, checked before anything is read
    Finishing f;
    f.ev = o.exposure;
    f.highlights = parse_highlights(o.highlights);
    f.space = parse_output_space(o.output_space);
    check_finishing(f);
  } catch (const Error& e) {
    throw Usage(e.what());
  }
  return o;
}

std::string dirname_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::string now_iso() {
  char buf[32];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

// The sidecar (schema edge4k.bayer/1), its Bayer buffer, and the C API's view of both.
struct Input {
  Json sidecar;
  ExifFacts exif;
  std::string sidecar_path, data_path, cfa;
  std::vector<uint16_t> bayer;
  edge4k_frame frame{};
};

// The sidecar's "exif" (kernels/raw.py: RawFrame.exif's EXIF_KEYS) as far as it has the expected
// types; anything else is left out of the image's EXIF, as the host leaves out what it cannot
// write, rather than failing the render. image_io.cc sanitises the values themselves.
ExifFacts exif_facts(const Json& sidecar) {
  ExifFacts facts;
  if (!sidecar.contains("exif") || !sidecar["exif"].is_object()) return facts;
  const Json& exif = sidecar["exif"];
  auto text_of = [&](const char* key) {
    return exif.contains(key) && exif[key].is_string() ? exif[key].get<std::string>() : std::string();
  };
  auto number_of = [&](const char* key) {
    return exif.contains(key) && exif[key].is_number() ? exif[key].get<double>() : 0.0;
  };
  facts.make = text_of("make");
  facts.model = text_of("model");
  facts.datetime = text_of("datetime");
  facts.exposure_time = number_of("exposure_time");
  facts.iso = number_of("iso");
  return facts;
}

void read_input(const std::string& path, Input* in) {
  in->sidecar_path = path;
  in->sidecar = parse_json(read_file(path), path);
  const Json& s = in->sidecar;
  if (!s.contains("schema") || s["schema"] != "edge4k.bayer/1") throw Error(path + " is not an edge4k.bayer/1 sidecar");
  const std::string data = text(field(s, "data", path), "sidecar data");
  if (data.empty()) throw Error(path + ": data is empty; it names the Bayer buffer beside the sidecar");
  in->data_path = data.front() == '/' ? data : dirname_of(path) + "/" + data;
  edge4k_frame& f = in->frame;
  auto limited = [&](const Json& v, const char* key) { return limited_number(v, "frame", key, path); };
  f.width = limited_integer(field(s, "width", path), "frame", "width", path);
  f.height = limited_integer(field(s, "height", path), "frame", "height", path);
  in->cfa = text(field(s, "cfa", path), "cfa");
  f.cfa = in->cfa.c_str();
  const Json& black = field(s, "black_level", path);
  const Json& gains = field(s, "wb_gains", path);
  const Json& matrix = field(s, "srgb_from_cam", path);
  auto list = [](const Json& v, size_t n) { return v.is_array() && v.size() == n; };
  bool rows = list(matrix, 3);
  for (size_t r = 0; rows && r < 3; ++r) rows = list(matrix[r], 3);
  if (!list(black, 4) || !list(gains, 3) || !rows)
    throw Error(path + ": black_level needs 4 values, wb_gains 3, srgb_from_cam 3 rows of 3");
  for (int c = 0; c < 4; ++c) f.black_level[c] = limited(black[c], "black_level");
  f.white_level = limited(field(s, "white_level", path), "white_level");
  for (int c = 0; c < 3; ++c) f.wb_gains[c] = limited(gains[c], "wb_gains");
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c) f.srgb_from_cam[r * 3 + c] = limited(matrix[r][c], "srgb_from_cam");
  f.orientation = s.contains("orientation") ? limited_integer(s["orientation"], "frame", "orientation", path) : 1;
  in->exif = exif_facts(s);
  const std::string bytes = read_file(in->data_path);
  const size_t n = static_cast<size_t>(std::max(f.width, 0)) * static_cast<size_t>(std::max(f.height, 0));
  if (bytes.size() != n * 2)
    throw Error(in->data_path + " holds " + std::to_string(bytes.size()) + " bytes; a " + std::to_string(f.width) + "x" +
                std::to_string(f.height) + " uint16 frame needs " + std::to_string(n * 2));
  in->bayer.resize(n);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < n; ++i) in->bayer[i] = static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));   // little-endian
  f.bayer = in->bayer.data();
  f.bayer_count = n;
}

// The profile's output.colour (kernels/rawcolour.py: ColourOptions.record()): the host's colour
// choices the sidecar carries (the white balance and CFA are applied before the frame is handed
// over; as shot when it says nothing), the library's exposure and highlight mode.
Json colour_record(const Json& sidecar, const Json& lib) {
  Json colour = {{"wb", "camera"}, {"wb_kelvin", nullptr}, {"wb_tint", 0.0}, {"cfa", nullptr}};
  if (sidecar.contains("colour") && sidecar["colour"].is_object())
    for (const char* key : {"wb", "wb_kelvin", "wb_tint", "cfa"})
      if (sidecar["colour"].contains(key)) colour[key] = sidecar["colour"][key];
  for (const char* key : {"exposure_ev", "highlights"}) colour[key] = lib["output"]["colour"][key];
  return colour;
}

// Throws the library's last error for a failed call.
void check(edge4k_status status) {
  if (status != EDGE4K_OK) throw Error(edge4k_last_error());
}

int about() {
  Json about = {{"edge4k_runner", EDGE4K_VERSION}};
  Json engines = Json::array();
  for (const auto& e : engine_names()) engines.push_back(e);
  about["engines"] = engines;
#ifdef EDGE4K_WITH_EXECUTORCH
  const Json et = executorch_about();
  for (const auto& [k, v] : et.items()) about[k] = v;
#endif
  const Json ort = onnxruntime_about();
  for (const auto& [k, v] : ort.items()) about[k] = v;
  std::cout << about.dump() << "\n";
  return 0;
}

int run(const Options& o) {
  if (o.about) return about();
  const OutputSpec spec = output_spec(o.output, o.bits);
  if (o.quality && spec.format != ImageFormat::Jpeg) throw Error("--quality is for JPEG output (.jpg), not " + o.output);
  Input input;
  read_input(o.input, &input);
  edge4k_runner* runner = nullptr;
  const edge4k_open_options open_options{o.threads, nullptr, o.look.c_str()};
  check(edge4k_open(o.artifacts.c_str(), &open_options, &runner));
  std::unique_ptr<edge4k_runner, void (*)(edge4k_runner*)> owned(runner, edge4k_close);
  const edge4k_finishing finishing{o.exposure, o.highlights.c_str(), o.output_space.c_str()};
  check(edge4k_set_finishing(runner, &finishing));
  size_t icc_size = 0;
  const char* icc = static_cast<const char*>(edge4k_icc_profile(runner, &icc_size));

  const edge4k_frame& frame = input.frame;
  std::vector<uint8_t> pixels(edge4k_output_bytes(frame.width, frame.height, spec.bits));
  for (int i = 0; i < o.warmup; ++i) check(edge4k_render(runner, &frame, spec.bits, pixels.data(), pixels.size()));
  check(edge4k_reset_profile(runner));
  const Json thermal_before = thermal_snapshot(o.sysfs);
  PowerSampler power(o.sysfs + "/class/power_supply");
  power.measure_idle(o.idle_seconds);
  const auto t0 = StageTimer::Clock::now();
  power.start();
  for (int i = 0; i < o.runs; ++i) check(edge4k_render(runner, &frame, spec.bits, pixels.data(), pixels.size()));
  const double seconds = std::chrono::duration<double>(StageTimer::Clock::now() - t0).count();
  const Json power_report = power.stop(o.runs, seconds);
  const Json thermal = thermal_report(thermal_before, thermal_snapshot(o.sysfs));

  const bool upright_swaps = frame.orientation >= 5;   // EXIF orientations 5..8 transpose the image
  const int out_width = upright_swaps ? frame.height : frame.width, out_height = upright_swaps ? frame.width : frame.height;
  ImageTags tags;
  tags.icc.assign(icc ? icc : "", icc_size);
  tags.icc_name = output_space_description(parse_output_space(o.output_space));
  tags.exif = input.exif;
  tags.quality = o.quality;
  const std::string image = encode_image(spec, pixels.data(), out_width, out_height, tags);
  if (o.profile.empty()) {
    write_file_atomic(o.output, image);
    std::cerr << "wrote " << o.output << "\n";
    return 0;
  }
  const char* library_profile = edge4k_profile_json(runner);
  if (!library_profile) throw Error(edge4k_last_error());
  const Json lib = parse_json(library_profile, "the library's profile");
  const Json& s = input.sidecar;
  const Json src = s.contains("source") ? s["source"] : Json::object();
  const std::string buffer_sha = sha256_file(input.data_path);
  Json profile = {
      {"schema", "edge4k.profile/1"},
      {"created", now_iso()},
      {"input", {{"path", src.contains("path") ? src["path"] : Json(input.sidecar_path)},
                 {"sha256", src.contains("sha256") ? src["sha256"] : Json(buffer_sha)},
                 {"cfa", input.cfa}, {"width", frame.width}, {"height", frame.height},
                 {"buffer", input.data_path}, {"buffer_sha256", buffer_sha},
                 // Square pixels only: the host's write_bayer refuses a frame that needs stretching.
                 {"pixel_aspect", 1.0}}},
  };
  // What the host learned decoding the RAW (the sidecar's), as runtime/pipeline.py records it.
  for (const char* key : {"matrix_source", "wb_source"})
    if (s.contains(key) && s[key].is_string()) profile["input"][key] = s[key];
  profile["input"]["wb_gains"] = Json::array();
  for (double g : frame.wb_gains) profile["input"]["wb_gains"].push_back(std::round(g * 1e6) / 1e6);
  for (const char* key : {"resolution", "tiling", "latent_compression"}) profile[key] = lib[key];
  profile["timing"] = {{"warmup", o.warmup}, {"runs", o.runs}, {"clock", lib["timing"]["clock"]}};
  for (const char* key : {"emulated", "note"})
    if (lib["timing"].contains(key)) profile["timing"][key] = lib["timing"][key];
  for (const char* key : {"latency_ms", "memory"}) profile[key] = lib[key];
  profile["power"] = power_report;
  profile["thermal"] = thermal;
  for (const char* key : {"device", "model", "stages"}) profile[key] = lib[key];
  profile["output"] = {{"path", o.output}, {"sha256", sha256_hex(image)}, {"width", out_width},
                       {"height", out_height}, {"bit_depth", spec.bits}, {"look", lib["output"]["look"]},
                       {"exposure_gain", lib["output"]["exposure_gain"]},
                       {"output_space", lib["output"]["output_space"]}};
  if (o.quality) profile["output"]["quality"] = o.quality;   // as runtime/pipeline.py: only when asked for
  profile["output"]["colour"] = colour_record(s, lib);
  profile["versions"] = lib["versions"];
  // Both files or neither: both are written before either is renamed into place.
  write_files_atomic({{o.profile, profile.dump(2) + "\n"}, {o.output, image}});
  std::cerr << "wrote " << o.output << "\nwrote " << o.profile << "\n";
  return 0;
}

}  // namespace
}  // namespace edge4k

int main(int argc, char** argv) {
  edge4k::remove_temporaries_on_signals();
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
