// libedge4k's C API (include/edge4k.h) over the pipeline: argument checks, status
// codes and the per-thread error message. No exception crosses it.
#include <cstring>
#include <new>
#include <string>

#include "edge4k.h"
#include "pipeline.h"

#ifndef EDGE4K_VERSION
#define EDGE4K_VERSION "0.0.0"
#endif

struct edge4k_runner {
  std::unique_ptr<edge4k::Pipeline> pipeline;
  std::string profile;   // the last edge4k_profile_json() text
  std::string icc;       // the output space's ICC profile (empty: sRGB)
};

namespace {

thread_local std::string last_error;

edge4k_status fail(edge4k_status status, const std::string& message) {
  last_error = message;
  return status;
}

// Runs body, mapping exceptions to a status and the error message.
template <typename F>
edge4k_status guarded(F&& body) {
  try {
    body();
    last_error.clear();
    return EDGE4K_OK;
  } catch (const edge4k::BuildError& e) {
    return fail(EDGE4K_BUILD_ERROR, e.what());
  } catch (const edge4k::Error& e) {
    return fail(EDGE4K_ENGINE_ERROR, e.what());
  } catch (const std::bad_alloc&) {
    return fail(EDGE4K_INTERNAL_ERROR, "out of memory");
  } catch (const std::exception& e) {
    return fail(EDGE4K_INTERNAL_ERROR, e.what());
  }
}

// The frame as the kernels take it, or the reason it cannot be one.
edge4k_status to_bayer(const edge4k_frame* f, edge4k::BayerFrame* out) {
  if (!f) return fail(EDGE4K_INVALID_ARGUMENT, "frame is NULL");
  if (!f->bayer) return fail(EDGE4K_INVALID_ARGUMENT, "frame.bayer is NULL");
  if (!f->cfa) return fail(EDGE4K_INVALID_ARGUMENT, "frame.cfa is NULL");
  if (f->width <= 0 || f->height <= 0 || f->bayer_count == 0)
    return fail(EDGE4K_INVALID_ARGUMENT, "frame size is zero (" + std::to_string(f->width) + "x" +
                                             std::to_string(f->height) + ", " + std::to_string(f->bayer_count) +
                                             " samples)");
  const size_t expected = static_cast<size_t>(f->width) * static_cast<size_t>(f->height);
  if (f->bayer_count != expected)
    return fail(EDGE4K_INVALID_ARGUMENT, "frame.bayer_count is " + std::to_string(f->bayer_count) + " samples, but a " +
                                             std::to_string(f->width) + "x" + std::to_string(f->height) +
                                             " frame has " + std::to_string(expected));
  try {
    out->width = f->width;
    out->height = f->height;
    out->cfa = f->cfa;
    std::memcpy(out->black_level, f->black_level, sizeof out->black_level);
    out->white_level = f->white_level;
    std::memcpy(out->wb_gains, f->wb_gains, sizeof out->wb_gains);
    std::memcpy(out->srgb_from_cam, f->srgb_from_cam, sizeof out->srgb_from_cam);
    out->orientation = f->orientation == 0 ? 1 : f->orientation;
    out->bayer.assign(f->bayer, f->bayer + expected);
    edge4k::check_frame(*out);
  } catch (const edge4k::Error& e) {
    return fail(EDGE4K_INVALID_ARGUMENT, e.what());
  } catch (const std::bad_alloc&) {
    return fail(EDGE4K_INTERNAL_ERROR, "out of memory");
  }
  return EDGE4K_OK;
}

}  // namespace

extern "C" {

const char* edge4k_version(void) { return EDGE4K_VERSION; }

const char* edge4k_last_error(void) { return last_error.c_str(); }

edge4k_status edge4k_open(const char* build_dir, const edge4k_open_options* options, edge4k_runner** out) {
  if (!out) return fail(EDGE4K_INVALID_ARGUMENT, "out is NULL");
  *out = nullptr;
  if (!build_dir || !*build_dir) return fail(EDGE4K_INVALID_ARGUMENT, "build_dir is NULL or empty");
  const int threads = options ? options->threads : 0;
  const std::string preset = options && options->expect_preset ? options->expect_preset : "";
  edge4k::Look look = edge4k::Look::Natural;
  try {
    if (options && options->look) look = edge4k::parse_look(options->look);
  } catch (const edge4k::Error& e) {
    return fail(EDGE4K_INVALID_ARGUMENT, e.what());
  }
  edge4k_runner* runner = nullptr;
  const edge4k_status status = guarded([&] {
    auto pipeline = std::make_unique<edge4k::Pipeline>(build_dir, threads, preset, look);
    runner = new edge4k_runner{std::move(pipeline), {}, {}};
  });
  *out = runner;
  return status;
}

void edge4k_close(edge4k_runner* runner) { delete runner; }

size_t edge4k_output_bytes(int width, int height, int bits) {
  if (width <= 0 || height <= 0 || (bits != 8 && bits != 16 && bits != 32)) return 0;
  return static_cast<size_t>(width) * static_cast<size_t>(height) * 3 * static_cast<size_t>(bits / 8);
}

edge4k_status edge4k_render(edge4k_runner* runner, const edge4k_frame* frame, int bits, void* rgb, size_t rgb_bytes) {
  if (!runner) return fail(EDGE4K_INVALID_ARGUMENT, "runner is NULL");
  if (!rgb) return fail(EDGE4K_INVALID_ARGUMENT, "rgb is NULL");
  if (bits != 8 && bits != 16 && bits != 32)
    return fail(EDGE4K_INVALID_ARGUMENT, "bits must be 8, 16 or 32 (float), got " + std::to_string(bits));
  const edge4k::OutputSpace space = runner->pipeline->finishing().space;
  if (bits < edge4k::output_space_min_bits(space))   // kernels/colourspace.py: check_bits
    return fail(EDGE4K_INVALID_ARGUMENT, std::string("output space ") + edge4k::output_space_name(space) +
                                             " needs a 16-bit image (.tif, or .png with --bits 16); " +
                                             std::to_string(bits) + "-bit would band");
  edge4k::BayerFrame bayer;
  if (const edge4k_status s = to_bayer(frame, &bayer); s != EDGE4K_OK) return s;
  const size_t needed = edge4k_output_bytes(frame->width, frame->height, bits);
  if (rgb_bytes != needed)
    return fail(EDGE4K_INVALID_ARGUMENT, "rgb_bytes is " + std::to_string(rgb_bytes) + ", a " +
                                             std::to_string(frame->width) + "x" + std::to_string(frame->height) + " " +
                                             std::to_string(bits) + "-bit image needs " + std::to_string(needed));
  // Rendered into our own buffer first: on failure the caller's is untouched.
  std::vector<uint8_t> pixels;
  return guarded([&] {
    runner->pipeline->render(bayer, bits, &pixels);
    std::memcpy(rgb, pixels.data(), needed);
  });
}

edge4k_status edge4k_set_finishing(edge4k_runner* runner, const edge4k_finishing* finishing) {
  if (!runner) return fail(EDGE4K_INVALID_ARGUMENT, "runner is NULL");
  if (!finishing) return fail(EDGE4K_INVALID_ARGUMENT, "finishing is NULL");
  try {
    edge4k::Finishing f;
    f.ev = finishing->exposure_ev;
    if (finishing->highlights) f.highlights = edge4k::parse_highlights(finishing->highlights);
    if (finishing->output_space) f.space = edge4k::parse_output_space(finishing->output_space);
    runner->pipeline->set_finishing(f);
    runner->icc = edge4k::icc_profile(f.space);
  } catch (const edge4k::Error& e) {
    return fail(EDGE4K_INVALID_ARGUMENT, e.what());
  }
  last_error.clear();
  return EDGE4K_OK;
}

const void* edge4k_icc_profile(edge4k_runner* runner, size_t* size) {
  if (size) *size = 0;
  if (!runner || !size) {
    fail(EDGE4K_INVALID_ARGUMENT, "runner and size must not be NULL");
    return nullptr;
  }
  last_error.clear();
  *size = runner->icc.size();
  return runner->icc.empty() ? nullptr : runner->icc.data();
}

edge4k_status edge4k_stage_latency_ms(edge4k_runner* runner, const char* stage, double* median, double* min,
                                      double* max) {
  if (!runner || !stage || !median || !min || !max)
    return fail(EDGE4K_INVALID_ARGUMENT, "runner, stage, median, min and max must not be NULL");
  if (runner->pipeline->runs() == 0) return fail(EDGE4K_INVALID_ARGUMENT, "no frame rendered since open or reset");
  const edge4k::Json summary = runner->pipeline->timer().summary_ms();
  if (!summary.contains(stage))
    return fail(EDGE4K_INVALID_ARGUMENT, std::string("unknown stage '") + stage +
                                             "' (raw_preprocess, global, encoder, backbone, decoder, postprocess, total)");
  *median = summary[stage]["median"].get<double>();
  *min = summary[stage]["min"].get<double>();
  *max = summary[stage]["max"].get<double>();
  last_error.clear();
  return EDGE4K_OK;
}

edge4k_status edge4k_reset_profile(edge4k_runner* runner) {
  if (!runner) return fail(EDGE4K_INVALID_ARGUMENT, "runner is NULL");
  runner->pipeline->reset_profile();
  last_error.clear();
  return EDGE4K_OK;
}

const char* edge4k_profile_json(edge4k_runner* runner) {
  if (!runner) {
    fail(EDGE4K_INVALID_ARGUMENT, "runner is NULL");
    return nullptr;
  }
  if (runner->pipeline->runs() == 0) {
    fail(EDGE4K_INVALID_ARGUMENT, "no frame rendered since open or reset");
    return nullptr;
  }
  const edge4k_status s = guarded([&] { runner->profile = runner->pipeline->profile().dump(2); });
  return s == EDGE4K_OK ? runner->profile.c_str() : nullptr;
}

}  // extern "C"
