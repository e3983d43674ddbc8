// A C ABI over the kernels, so the tests can call the very code the runner uses
// (through ctypes) and compare it with the Python implementation. Each function
// returns 0, or -1 with the message available from e4k_last_error().
#include <cstring>
#include <string>

#include "edge4k_kernels.h"

using namespace edge4k;

static thread_local std::string last_error;

template <typename F>
static int guarded(F&& body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return -1;
  }
}

static TilePlan make_plan(int h, int w, int f, int tile, int overlap, int native) {
  return plan_tiles(h, w, f, tile, overlap, native != 0);
}

extern "C" {

const char* e4k_last_error() { return last_error.c_str(); }

// Threads of the row-parallel kernels; 0: every core.
void e4k_set_threads(int threads) { set_kernel_threads(threads); }

static BayerFrame make_frame(const uint16_t* bayer, int height, int width, const char* cfa, const double* black4,
                             double white, const double* gains3, const double* matrix9) {
  BayerFrame f;
  f.width = width;
  f.height = height;
  f.cfa = cfa;
  std::memcpy(f.black_level, black4, sizeof f.black_level);
  f.white_level = white;
  std::memcpy(f.wb_gains, gains3, sizeof f.wb_gains);
  if (matrix9) std::memcpy(f.srgb_from_cam, matrix9, sizeof f.srgb_from_cam);
  f.bayer.assign(bayer, bayer + static_cast<size_t>(width) * height);
  return f;
}

// out: (4, (height + 6) / 2, (width + 6) / 2).
int e4k_pack(const uint16_t* bayer, int height, int width, const char* cfa, const double* black4, double white,
             const double* gains3, float* out) {
  return guarded([&] {
    const auto packed = pack(make_frame(bayer, height, width, cfa, black4, white, gains3, nullptr));
    std::memcpy(out, packed.data(), packed.size() * sizeof(float));
  });
}

// The whole frontend: thumb (4, thumb_size, thumb_size), meta (5), packed (4, padded_height / 2,
// padded_width / 2); scalars: exposure gain, top, left.
int e4k_frontend(const uint16_t* bayer, int height, int width, const char* cfa, const double* black4, double white,
                 const double* gains3, const double* matrix9, int padded_height, int padded_width, int thumb_size,
                 float* thumb, float* meta, float* packed, double* scalars) {
  return guarded([&] {
    const auto f = make_frame(bayer, height, width, cfa, black4, white, gains3, matrix9);
    check_frame(f);
    const auto out = frontend(f, padded_height, padded_width, thumb_size, packed);
    std::memcpy(thumb, out.thumb.data(), out.thumb.size() * sizeof(float));
    std::memcpy(meta, out.meta.data(), out.meta.size() * sizeof(float));
    const double values[3] = {out.exposure, static_cast<double>(out.top), static_cast<double>(out.left)};
    std::memcpy(scalars, values, sizeof values);
  });
}

// gain: the natural look's finishing gain of a (4, size, size) thumbnail.
int e4k_metered_gain(const float* thumb, int size, const double* matrix9, double* gain) {
  return guarded([&] {
    if (size < 1) throw Error("thumbnail size " + std::to_string(size) + " must be at least 1");
    *gain = metered_gain(thumb, size, matrix9);
  });
}

// shot_read: (2,) noise variance line of a packed (4, height, width) frame.
int e4k_noise_estimate(const float* packed, int height, int width, double* shot_read) {
  return guarded([&] {
    const auto [shot, read] = noise_estimate(packed, height, width);
    shot_read[0] = shot;
    shot_read[1] = read;
  });
}

// rgb: (3, height, width), finished in place.
int e4k_finish(float* rgb, int height, int width, const double* matrix9, double exposure, const char* look) {
  return guarded([&] { finish(rgb, height, width, matrix9, exposure, parse_look(look)); });
}

// finish() with exposure compensation (ev, in stops) and a highlight mode ("clip" or "reconstruct").
int e4k_finish_options(float* rgb, int height, int width, const double* matrix9, double exposure, const char* look,
                       double ev, const char* highlights) {
  return guarded([&] {
    Finishing f;
    f.ev = ev;
    f.highlights = parse_highlights(highlights);
    check_finishing(f);
    finish(rgb, height, width, matrix9, exposure, parse_look(look), f.ev, f.highlights);
  });
}

// out9: the finishing matrix into an output space's linear RGB (kernels/colourspace.py: target_from_cam).
int e4k_target_from_cam(const char* space, const double* matrix9, double* out9) {
  return guarded([&] { target_from_cam(parse_output_space(space), matrix9, out9); });
}

// rgb: count finished sRGB-curve values, re-encoded in place to the space's curve.
int e4k_encode_space(const char* space, float* rgb, size_t count) {
  return guarded([&] { encode_space(parse_output_space(space), rgb, count); });
}

// The space's ICC profile into out (capacity bytes); *size: its length (0 for sRGB).
int e4k_icc_profile(const char* space, char* out, size_t capacity, size_t* size) {
  return guarded([&] {
    const std::string icc = icc_profile(parse_output_space(space));
    if (icc.size() > capacity) throw Error("the ICC profile needs " + std::to_string(icc.size()) + " bytes");
    std::memcpy(out, icc.data(), icc.size());
    *size = icc.size();
  });
}

// out: (3, width, height) for orientations 5..8, else (3, height, width).
int e4k_orient(const float* rgb, int height, int width, int orientation, float* out) {
  return guarded([&] {
    const auto o = orient(rgb, height, width, orientation);
    std::memcpy(out, o.data(), o.size() * sizeof(float));
  });
}

int e4k_thumbnail(const float* packed, int channels, int height, int width, int size, float* out) {
  return guarded([&] {
    const auto t = thumbnail(packed, channels, height, width, size);
    std::memcpy(out, t.data(), t.size() * sizeof(float));
  });
}

int e4k_pad_reflect(const float* in, int channels, int height, int width, int padded_height, int padded_width,
                    float* out) {
  return guarded([&] {
    const auto p = pad_reflect(in, channels, height, width, padded_height, padded_width);
    std::memcpy(out, p.data(), p.size() * sizeof(float));
  });
}

// origins: room for max_tiles (y, x) pairs; info: padded h, padded w, tile h, tile w, tile count.
static void copy_plan(const TilePlan& p, int max_tiles, int* origins, int* info) {
  const int n = static_cast<int>(p.origins.size());
  if (n > max_tiles) throw Error("more than " + std::to_string(max_tiles) + " tiles");
  for (int k = 0; k < n; ++k) {
    origins[2 * k] = p.origins[k].first;
    origins[2 * k + 1] = p.origins[k].second;
  }
  const int values[5] = {p.padded_height, p.padded_width, p.tile_height, p.tile_width, n};
  std::memcpy(info, values, sizeof values);
}

int e4k_plan_tiles(int height, int width, int f, int tile, int overlap, int native, int max_tiles, int* origins,
                   int* info) {
  return guarded([&] { copy_plan(make_plan(height, width, f, tile, overlap, native), max_tiles, origins, info); });
}

// The same for a height x width RAW frame: plan_frame (the phase padding added).
int e4k_plan_frame(int height, int width, int f, int tile, int overlap, int native, int max_tiles, int* origins,
                   int* info) {
  return guarded([&] {
    copy_plan(plan_frame(height, width, f, tile, overlap, native != 0), max_tiles, origins, info);
  });
}

int e4k_blend_weight(int height, int width, int f, int tile, int overlap, int y, int x, float* out) {
  return guarded([&] {
    const auto w = blend_weight(make_plan(height, width, f, tile, overlap, 0), y, x);
    std::memcpy(out, w.data(), w.size() * sizeof(float));
  });
}

// tiles: (tile count, channels, tile, tile) in plan order; out: (channels, height, width).
int e4k_blend(int height, int width, int f, int tile, int overlap, int native, int channels, const float* tiles,
              float* out) {
  return guarded([&] {
    const auto p = make_plan(height, width, f, tile, overlap, native);
    Blender blender(p, channels);
    const size_t step = static_cast<size_t>(channels) * p.tile_height * p.tile_width;
    for (size_t k = 0; k < p.origins.size(); ++k) blender.add(tiles + k * step, p.origins[k].first, p.origins[k].second);
    const auto r = blender.result();
    std::memcpy(out, r.data(), r.size() * sizeof(float));
  });
}

// A Blender for the host pipeline (kernels/cpp.py): the plan's sizes and its origins ((y, x)
// pairs), blending into out, a zeroed (channels, window height, window width) buffer the caller
// owns and keeps alive. Returns nullptr on error.
void* e4k_blender_new(int height, int width, int padded_height, int padded_width, int tile_height, int tile_width,
                      int overlap, int channels, int tiles, const int* origins, int top, int left, int window_height,
                      int window_width, float* out) {
  Blender* blender = nullptr;
  guarded([&] {
    if (height <= 0 || width <= 0 || height > padded_height || width > padded_width || tile_height <= 0 ||
        tile_width <= 0 || tile_height > padded_height || tile_width > padded_width || overlap < 0 ||
        channels <= 0 || tiles <= 0 || window_height <= 0 || !out)
      throw Error("invalid blending plan");
    TilePlan p;
    p.height = height;
    p.width = width;
    p.padded_height = padded_height;
    p.padded_width = padded_width;
    p.tile_height = tile_height;
    p.tile_width = tile_width;
    p.overlap = overlap;
    for (int k = 0; k < tiles; ++k) p.origins.emplace_back(origins[2 * k], origins[2 * k + 1]);
    blender = new Blender(p, channels, Window{top, left, window_height, window_width}, out);
  });
  return blender;
}

// tile: (channels, tile_height, tile_width) at the plan's origin (y, x).
int e4k_blender_add(void* blender, const float* tile, int y, int x) {
  return guarded([&] { static_cast<Blender*>(blender)->add(tile, y, x); });
}

void e4k_blender_free(void* blender) { delete static_cast<Blender*>(blender); }

// out: the (12, 4, 3, 3) Malvar-He-Cutler weight of a raw_skip decoder's base.
void e4k_mhc_weight(float* out) {
  const auto& w = mhc_demosaic_weight();
  std::memcpy(out, w.data(), sizeof(float) * w.size());
}

// rgb: (batch, 3, 2 height, 2 width) decoder output, the base of packed (batch, 4, height, width) added in place.
int e4k_add_mhc_base(const float* packed, int batch, int height, int width, float* rgb) {
  return guarded([&] { add_mhc_base(packed, batch, height, width, rgb); });
}

int e4k_quantise(const float* rgb, int height, int width, int bits, void* out) {
  return guarded([&] { quantise(rgb, height, width, bits, out); });
}

}  // extern "C"
