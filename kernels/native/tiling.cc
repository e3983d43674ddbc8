// Tiling kernels; see tiling.h. Built with -ffp-contract=off like the others.
#include "tiling.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "frontend.h"

namespace edge4k {

// numpy's "reflect" index for i in [0, n + pad): mirror about the last sample.
static int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  return i < n ? i : period - i;
}

void reflect_in_place(float* data, int channels, int height, int width, int padded_height, int padded_width) {
  for (int c = 0; c < channels; ++c) {
    float* plane = data + static_cast<size_t>(c) * padded_height * padded_width;
    for (int y = 0; y < height; ++y) {
      float* row = plane + static_cast<size_t>(y) * padded_width;
      for (int x = width; x < padded_width; ++x) row[x] = row[reflect_index(x, width)];
    }
    for (int y = height; y < padded_height; ++y) {
      const float* src = plane + static_cast<size_t>(reflect_index(y, height)) * padded_width;
      std::copy(src, src + padded_width, plane + static_cast<size_t>(y) * padded_width);
    }
  }
}

std::vector<float> pad_reflect(const float* in, int channels, int height, int width, int padded_height,
                               int padded_width) {
  std::vector<float> out(static_cast<size_t>(channels) * padded_height * padded_width);
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < height; ++y) {
      const float* src = in + (static_cast<size_t>(c) * height + y) * width;
      std::copy(src, src + width, out.data() + (static_cast<size_t>(c) * padded_height + y) * padded_width);
    }
  reflect_in_place(out.data(), channels, height, width, padded_height, padded_width);
  return out;
}

static int round_up(int n, int m) { return (n + m - 1) / m * m; }

static std::vector<int> axis_origins(int length, int tile, int stride) {
  std::vector<int> origins;
  for (int o = 0; o <= std::max(length - tile, 0); o += stride) origins.push_back(o);
  if (origins.back() + tile < length) origins.push_back(length - tile);
  return origins;
}

TilePlan plan_tiles(int height, int width, int f, int tile, int overlap, bool native) {
  if (f <= 0) throw Error("latent compression " + std::to_string(f) + " must be positive");
  if (height <= 0 || width <= 0) throw Error("cannot tile an empty " + std::to_string(width) + "x" + std::to_string(height) + " frame");
  TilePlan p;
  p.height = height;
  p.width = width;
  p.padded_height = round_up(height, f);
  p.padded_width = round_up(width, f);
  if (native) {
    p.native = true;
    p.tile_height = p.padded_height;
    p.tile_width = p.padded_width;
    p.origins = {{0, 0}};
    return p;
  }
  const std::string t = std::to_string(tile), o = std::to_string(overlap), fs = std::to_string(f);
  if (tile <= 0) throw Error("tiled mode needs a tile size > 0");
  if (tile % f) throw Error("tile " + t + " is not a multiple of the latent compression " + fs);
  if (overlap < 0 || overlap >= tile)
    throw Error("overlap " + o + " must be >= 0 and smaller than the tile " + t);
  if (overlap % f) throw Error("overlap " + o + " is not a multiple of the latent compression " + fs);
  if (height < tile || width < tile)
    throw Error("frame " + std::to_string(width) + "x" + std::to_string(height) + " is smaller than one " +
                t + "x" + t + " tile");
  p.tile_height = p.tile_width = tile;
  p.overlap = overlap;
  for (int y : axis_origins(p.padded_height, tile, tile - overlap))
    for (int x : axis_origins(p.padded_width, tile, tile - overlap)) p.origins.emplace_back(y, x);
  return p;
}

TilePlan plan_frame(int height, int width, int f, int tile, int overlap, bool native) {
  return plan_tiles(height + PHASE_PAD, width + PHASE_PAD, f, tile, overlap, native);
}

// kernels/tiling.py:_ramp, operation for operation in float32.
static std::vector<float> ramp(int length, int overlap, bool lead, bool trail) {
  std::vector<float> w(length, 1.0f);
  if (overlap == 0) return w;
  const int margin = overlap / 4, span = overlap - 2 * margin;
  const float pi = static_cast<float>(M_PI);
  std::vector<float> rise(length);
  for (int k = 0; k < length; ++k) {
    const float i = static_cast<float>(k) + 0.5f;
    const float up = std::clamp((i - static_cast<float>(margin)) / static_cast<float>(span), 0.0f, 1.0f);
    const float s = std::sin(up * pi / 2.0f);
    rise[k] = s * s;
  }
  for (int k = 0; k < length; ++k) {
    if (lead) w[k] *= rise[k];
    if (trail) w[k] *= rise[length - 1 - k];
  }
  return w;
}

std::vector<float> blend_weight(const TilePlan& p, int y, int x) {
  const auto wy = ramp(p.tile_height, p.overlap, y > 0, y + p.tile_height < p.padded_height);
  const auto wx = ramp(p.tile_width, p.overlap, x > 0, x + p.tile_width < p.padded_width);
  std::vector<float> w(static_cast<size_t>(p.tile_height) * p.tile_width);
  for (int i = 0; i < p.tile_height; ++i)
    for (int j = 0; j < p.tile_width; ++j) w[static_cast<size_t>(i) * p.tile_width + j] = wy[i] * wx[j];
  return w;
}

// For each distinct origin on one axis, its ramp divided by the sum of every ramp covering
// each position: (origin, normalised ramp) pairs.
static std::vector<std::pair<int, std::vector<float>>> normalised_ramps(const std::vector<int>& origins, int tile,
                                                                          int length, int overlap) {
  std::vector<std::pair<int, std::vector<float>>> ramps;
  std::vector<float> sum(length, 0.0f);
  for (int o : origins) {
    ramps.emplace_back(o, ramp(tile, overlap, o > 0, o + tile < length));
    for (int k = 0; k < tile; ++k) sum[o + k] += ramps.back().second[k];
  }
  for (auto& [o, r] : ramps)
    for (int k = 0; k < tile; ++k) r[k] /= sum[o + k];
  return ramps;
}

static const std::vector<float>& ramp_at(const std::vector<std::pair<int, std::vector<float>>>& ramps, int origin,
                                         int y, int x) {
  for (const auto& [o, r] : ramps)
    if (o == origin) return r;
  throw Error("no tile of the plan starts at (" + std::to_string(y) + ", " + std::to_string(x) + ")");
}

Blender::Blender(const TilePlan& plan, int channels, Window window, float* out)
    : plan_(plan), channels_(channels),
      window_(window.height > 0 ? window : Window{0, 0, plan.height, plan.width}) {
  const Window& w = window_;
  if (w.top < 0 || w.left < 0 || w.width <= 0 || w.top + w.height > plan.padded_height ||
      w.left + w.width > plan.padded_width)
    throw Error("the window lies outside the padded frame");
  size_ = static_cast<size_t>(channels) * w.height * w.width;
  if (!out) own_.assign(size_, 0.0f);
  out_ = out ? out : own_.data();
  std::vector<int> ys, xs;
  for (const auto& [y, x] : plan.origins) {
    if (std::find(ys.begin(), ys.end(), y) == ys.end()) ys.push_back(y);
    if (std::find(xs.begin(), xs.end(), x) == xs.end()) xs.push_back(x);
  }
  rows_ = normalised_ramps(ys, plan.tile_height, plan.padded_height, plan.overlap);
  cols_ = normalised_ramps(xs, plan.tile_width, plan.padded_width, plan.overlap);
}

void Blender::add(const float* tile, int y, int x) {
  const auto& wy = ramp_at(rows_, y, y, x);
  const auto& wx = ramp_at(cols_, x, y, x);
  const Window& w = window_;
  const int th = plan_.tile_height, tw = plan_.tile_width;
  const int i0 = std::max(0, w.top - y), i1 = std::min(th, w.top + w.height - y);     // tile rows in the window
  const int j0 = std::max(0, w.left - x), j1 = std::min(tw, w.left + w.width - x);    // tile columns
  if (i0 >= i1 || j0 >= j1) return;
  parallel_for(static_cast<long>(channels_) * (i1 - i0), [&](long begin, long end) {
    for (long row = begin; row < end; ++row) {
      const int c = static_cast<int>(row / (i1 - i0)), i = i0 + static_cast<int>(row % (i1 - i0));
      const float* src = tile + (static_cast<size_t>(c) * th + i) * tw;
      float* dst = out_ + (static_cast<size_t>(c) * w.height + (y + i - w.top)) * w.width + (x - w.left);
      const float row_weight = wy[i];
      for (int j = j0; j < j1; ++j) dst[j] += src[j] * (row_weight * wx[j]);
    }
  }, 16);
}

}  // namespace edge4k
