// postprocess kernels; see postprocess.h.
#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace edge4k {

Look parse_look(const std::string& name) {
  if (name == "natural") return Look::Natural;
  if (name == "neutral") return Look::Neutral;
  throw Error("unknown look '" + name + "'; valid looks: neutral, natural");
}

const char* look_name(Look look) { return look == Look::Natural ? "natural" : "neutral"; }

static float srgb_encode(float x) {
  return x <= 0.0031308f ? 12.92f * x : 1.055f * std::pow(std::max(x, 0.0031308f), 1.0f / 2.4f) - 0.055f;
}

void finish(float* rgb, int height, int width, const double* srgb_from_cam, double exposure, Look look) {
  const size_t n = static_cast<size_t>(height) * width;
  float m[9];
  for (int k = 0; k < 9; ++k) m[k] = static_cast<float>(srgb_from_cam[k]);
  const float e = static_cast<float>(exposure);
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
  for (size_t k = begin; k < static_cast<size_t>(end); ++k) {
    float lin[3], out[3];
    for (int c = 0; c < 3; ++c) {
      const float v = std::clamp(rgb[c * n + k], 0.0f, 1.0f);
      lin[c] = v * v;
    }
    for (int i = 0; i < 3; ++i) {
      const float v = std::clamp(m[3 * i] * lin[0] + m[3 * i + 1] * lin[1] + m[3 * i + 2] * lin[2], 0.0f, 1.0f);
      if (look == Look::Natural) {
        const float y = srgb_encode(std::clamp(v * e, 0.0f, 1.0f));
        out[i] = y * y * (3 - 2 * y);   // smoothstep
      } else {
        out[i] = srgb_encode(v);
      }
    }
    for (int c = 0; c < 3; ++c) rgb[c * n + k] = out[c];
  }
  });
}

std::vector<float> orient(const float* rgb, int height, int width, int orientation) {
  // kernels/postprocess.py: ORIENTATIONS, (flip rows, flip columns, transpose) applied in that order.
  static const bool kOps[9][3] = {{}, {0, 0, 0}, {0, 1, 0}, {1, 1, 0}, {1, 0, 0},
                                  {0, 0, 1}, {1, 0, 1}, {1, 1, 1}, {0, 1, 1}};
  if (orientation < 1 || orientation > 8) throw Error("orientation must be 1..8, got " + std::to_string(orientation));
  const bool flip_rows = kOps[orientation][0], flip_cols = kOps[orientation][1], transpose = kOps[orientation][2];
  const int oh = transpose ? width : height, ow = transpose ? height : width;
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<float> out(3 * n);
  parallel_for(3L * oh, [&](long begin, long end) {
  for (long row = begin; row < end; ++row) {
    const int c = static_cast<int>(row / oh), y = static_cast<int>(row % oh);
      for (int x = 0; x < ow; ++x) {
        int sy = transpose ? x : y, sx = transpose ? y : x;   // position in the flipped image
        if (flip_rows) sy = height - 1 - sy;
        if (flip_cols) sx = width - 1 - sx;
        out[c * n + static_cast<size_t>(y) * ow + x] = rgb[c * n + static_cast<size_t>(sy) * width + sx];
      }
  }
  }, 16);
  return out;
}

void quantise(const float* rgb, int height, int width, int bits, void* out) {
  if (bits != 8 && bits != 16) throw Error("bit depth must be 8 or 16, got " + std::to_string(bits));
  const float peak = static_cast<float>((1 << bits) - 1);
  const size_t n = static_cast<size_t>(height) * width;
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
    for (size_t k = begin; k < static_cast<size_t>(end); ++k)
      for (int c = 0; c < 3; ++c) {
        const float v = std::nearbyint(std::clamp(rgb[c * n + k], 0.0f, 1.0f) * peak);   // half to even
        if (bits == 8)
          static_cast<uint8_t*>(out)[k * 3 + c] = static_cast<uint8_t>(v);
        else
          static_cast<uint16_t*>(out)[k * 3 + c] = static_cast<uint16_t>(v);
      }
  });
}

std::pair<int, int> output_size(const BayerFrame& frame) {
  return frame.orientation >= 5 ? std::make_pair(frame.height, frame.width) : std::make_pair(frame.width, frame.height);
}

void postprocess(const float* rgb, int rgb_height, int rgb_width, int top, int left, const BayerFrame& frame,
                 double exposure, Look look, int bits, void* out) {
  const int h = frame.height, w = frame.width;
  if (top < 0 || left < 0 || top + h > rgb_height || left + w > rgb_width)
    throw Error("the network output does not hold the frame at its phase padding");
  std::vector<float> image(static_cast<size_t>(3) * h * w);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < h; ++y) {
      const float* src = rgb + (static_cast<size_t>(c) * rgb_height + top + y) * rgb_width + left;
      std::copy(src, src + w, image.data() + (static_cast<size_t>(c) * h + y) * w);
    }
  finish(image.data(), h, w, frame.srgb_from_cam, exposure, look);
  const auto upright = frame.orientation == 1 ? std::move(image) : orient(image.data(), h, w, frame.orientation);
  const auto [ow, oh] = output_size(frame);
  quantise(upright.data(), oh, ow, bits, out);
}

}  // namespace edge4k
