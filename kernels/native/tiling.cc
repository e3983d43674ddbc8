// Tiling kernels; see tiling.h. Built with -ffp-contract=off like the others.
#include "tiling.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace edge4k {

// numpy's "reflect" index for i in [0, n + pad): mirror about the last sample.
static int reflect_index(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  i %= period;
  return i < n ? i : period - i;
}

std::vector<float> pad_reflect(const float* in, int channels, int height, int width, int padded_height,
                               int padded_width) {
  std::vector<float> out(static_cast<size_t>(channels) * padded_height * padded_width);
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < padded_height; ++y) {
      const float* src = in + (static_cast<size_t>(c) * height + reflect_index(y, height)) * width;
      float* dst = out.data() + (static_cast<size_t>(c) * padded_height + y) * padded_width;
      std::copy(src, src + width, dst);
      for (int x = width; x < padded_width; ++x) dst[x] = src[reflect_index(x, width)];
    }
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

// runtime/tiling.py:_ramp, operation for operation in float32.
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

Blender::Blender(const TilePlan& plan, int channels)
    : plan_(plan), channels_(channels),
      acc_(static_cast<size_t>(channels) * plan.padded_height * plan.padded_width, 0.0f),
      weight_(static_cast<size_t>(plan.padded_height) * plan.padded_width, 0.0f) {}

void Blender::add(const float* tile, int y, int x) {
  const int th = plan_.tile_height, tw = plan_.tile_width, pw = plan_.padded_width;
  if (y < 0 || x < 0 || y + th > plan_.padded_height || x + tw > pw)
    throw Error("tile at (" + std::to_string(y) + ", " + std::to_string(x) + ") lies outside the padded frame");
  const auto w = blend_weight(plan_, y, x);
  parallel_for(th, [&](long begin, long end) {
    for (long i = begin; i < end; ++i) {
      const float* wr = w.data() + static_cast<size_t>(i) * tw;
      for (int c = 0; c < channels_; ++c) {
        float* acc = acc_.data() + (static_cast<size_t>(c) * plan_.padded_height + y + i) * pw + x;
        const float* src = tile + (static_cast<size_t>(c) * th + i) * tw;
        for (int j = 0; j < tw; ++j) acc[j] += src[j] * wr[j];
      }
      float* dst = weight_.data() + static_cast<size_t>(y + i) * pw + x;
      for (int j = 0; j < tw; ++j) dst[j] += wr[j];
    }
  }, 16);
}

std::vector<float> Blender::result(int top, int left, int h, int w) const {
  const int ph = plan_.padded_height, pw = plan_.padded_width;
  if (top < 0 || left < 0 || h < 0 || w < 0 || top + h > ph || left + w > pw)
    throw Error("the window lies outside the padded frame");
  std::vector<float> out(static_cast<size_t>(channels_) * h * w);
  parallel_for(static_cast<long>(channels_) * h, [&](long begin, long end) {
    for (long row = begin; row < end; ++row) {
      const int c = static_cast<int>(row / h), y = static_cast<int>(row % h) + top;
      const float* acc = acc_.data() + (static_cast<size_t>(c) * ph + y) * pw + left;
      const float* weight = weight_.data() + static_cast<size_t>(y) * pw + left;
      float* dst = out.data() + static_cast<size_t>(row) * w;
      for (int x = 0; x < w; ++x) dst[x] = acc[x] / weight[x];
    }
  }, 16);
  return out;
}

}  // namespace edge4k
