// postprocess kernels; see postprocess.h.
#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>

namespace edge4k {

Look parse_look(const std::string& name) {
  if (name == "natural") return Look::Natural;
  if (name == "neutral") return Look::Neutral;
  throw Error("unknown look '" + name + "'; valid looks: neutral, natural");
}

const char* look_name(Look look) { return look == Look::Natural ? "natural" : "neutral"; }

Highlights parse_highlights(const std::string& name) {
  if (name == "clip") return Highlights::Clip;
  if (name == "reconstruct") return Highlights::Reconstruct;
  throw Error("unknown highlight mode '" + name + "'; valid: clip, reconstruct");
}

const char* highlights_name(Highlights mode) { return mode == Highlights::Clip ? "clip" : "reconstruct"; }

void check_finishing(const Finishing& f) {
  if (!std::isfinite(f.ev) || std::abs(f.ev) > 10) {
    std::ostringstream said;   // as Python's :g
    said << f.ev;
    throw Error("exposure must be within -10..+10 EV, got " + said.str());
  }
}

// Rounds to the nearest integer, half to even (the FPU's default mode), for |x| < 2^22: adding
// and subtracting 1.5 * 2^23 leaves no fraction bits. Unlike std::nearbyint this needs no SSE4.1
// or libm call, so loops using it vectorise.
static inline float round_half_even(float x) {
  const float magic = 12582912.0f;
  return (x + magic) - magic;
}

// x^(1/2.4) for x in [0.0031308, 1] without libm's scalar powf, so the finishing loop
// vectorises: log2 x from the exponent plus the atanh series of the mantissa (reduced to
// [0.71, 1.42], |t| <= 0.172, truncation below 1e-9), times 1/2.4, then 2^y as 2^round(y)
// times the Taylor series of e^(f ln 2), |f| <= 0.5 (truncation below 1e-8). Float rounding
// leaves it within about 3e-7 of the exact value (tests hold it to torch's pow at 2e-6).
static inline float pow_inverse_2p4(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int exponent = static_cast<int>(bits >> 23) - 127;
  bits = (bits & 0x007fffffu) | 0x3f800000u;   // the mantissa, in [1, 2)
  float m;
  std::memcpy(&m, &bits, sizeof m);
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  exponent += high ? 1 : 0;
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float ln_m = 2.0f * t * (1.0f + t2 * (1.0f / 3 + t2 * (1.0f / 5 + t2 * (1.0f / 7 + t2 * (1.0f / 9)))));
  const float y = static_cast<float>(exponent) * (1.0f / 2.4f) + ln_m * (1.44269504f / 2.4f);
  const float n = round_half_even(y), g = (y - n) * 0.693147181f;
  const float e_g = 1.0f + g * (1.0f + g * (1.0f / 2 + g * (1.0f / 6 + g * (1.0f / 24 + g * (1.0f / 120 +
                    g * (1.0f / 720 + g * (1.0f / 5040)))))));
  const uint32_t scale_bits = static_cast<uint32_t>(static_cast<int>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return e_g * scale;
}

// The sRGB curve (IEC 61966-2-1) on [0, 1].
static inline float srgb_encode(float x) {
  const float curve = 1.055f * pow_inverse_2p4(std::max(x, 0.0031308f)) - 0.055f;
  return x <= 0.0031308f ? 12.92f * x : curve;
}

static inline float clamp01(float x) { return std::min(std::max(x, 0.0f), 1.0f); }

// On x86-64 the pixel loops are also compiled for AVX-512 and AVX2 and the widest the CPU has is
// picked at load time (16 or 8 lanes instead of SSE2's 4; the same IEEE operations, so the same
// bits: no FMA is enabled).
#if defined(__x86_64__) && defined(__GNUC__)
#define EDGE4K_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EDGE4K_SIMD_CLONES
#endif

// finish() for one look with highlights clipped, branch-free so that the pixel loop vectorises.
// gain: the natural look's exposure times 2^ev (the neutral look's 2^ev; 1 multiplies exactly).
template <bool kNatural>
static inline void finish_range(float* rgb, size_t n, size_t begin, size_t end, const float* m, float gain) {
  float* r = rgb;
  float* g = rgb + n;
  float* b = rgb + 2 * n;
  for (size_t k = begin; k < end; ++k) {
    const float lr = clamp01(r[k]) * clamp01(r[k]), lg = clamp01(g[k]) * clamp01(g[k]),
                lb = clamp01(b[k]) * clamp01(b[k]);
    float out[3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) {
      const float v = clamp01(m[3 * i] * lr + m[3 * i + 1] * lg + m[3 * i + 2] * lb);
      const float y = srgb_encode(clamp01(v * gain));
      out[i] = kNatural ? y * y * (3 - 2 * y) : y;   // the natural look's smoothstep
    }
    r[k] = out[0];
    g[k] = out[1];
    b[k] = out[2];
  }
}

EDGE4K_SIMD_CLONES static void finish_natural(float* rgb, size_t n, size_t begin, size_t end, const float* m,
                                             float exposure) {
  finish_range<true>(rgb, n, begin, end, m, exposure);
}

EDGE4K_SIMD_CLONES static void finish_neutral(float* rgb, size_t n, size_t begin, size_t end, const float* m,
                                             float gain) {
  finish_range<false>(rgb, n, begin, end, m, gain);
}

// The mean over the finest of the scales 1/8, 1/32, 1/128 of the frame's side (kernels/postprocess.py:
// _spread): values (channels, H, W) times weight (H, W), area-averaged (torch's avg_pool2d with
// ceil_mode: the last cells partial), brought back to (H, W) bilinearly (torch's interpolate,
// align_corners=False), divided by the weight's own; beyond every scale, the frame's weighted mean.
static std::vector<float> spread(const float* values, int channels, const float* weight, int h, int w) {
  const size_t n = static_cast<size_t>(h) * w;
  std::vector<float> out(channels * n, 0.0f);
  std::vector<uint8_t> filled(n, 0);
  for (int s : {8, 32, 128}) {
    const int kh = std::min(s, h), kw = std::min(s, w), oh = (h + kh - 1) / kh, ow = (w + kw - 1) / kw;
    // pooled planes: channels of num, then den
    std::vector<float> pooled(static_cast<size_t>(channels + 1) * oh * ow);
    parallel_for(oh, [&](long begin, long end) {
      for (long i = begin; i < end; ++i)
        for (int j = 0; j < ow; ++j) {
          const int y0 = static_cast<int>(i) * kh, y1 = std::min(y0 + kh, h), x0 = j * kw, x1 = std::min(x0 + kw, w);
          const double cells = static_cast<double>(y1 - y0) * (x1 - x0);
          for (int c = 0; c <= channels; ++c) {
            double sum = 0;
            for (int y = y0; y < y1; ++y)
              for (int x = x0; x < x1; ++x) {
                const size_t k = static_cast<size_t>(y) * w + x;
                sum += c < channels ? values[c * n + k] * weight[k] : weight[k];
              }
            pooled[(static_cast<size_t>(c) * oh + i) * ow + j] = static_cast<float>(sum / cells);
          }
        }
    }, 1);
    // torch's source index: scale (in / out) * (i + 0.5) - 0.5, at least 0
    auto source = [](int i, int in, int out, int* i0, int* i1, float* l1) {
      const float src = std::max(static_cast<float>(in) / static_cast<float>(out) * (i + 0.5f) - 0.5f, 0.0f);
      *i0 = static_cast<int>(src);
      *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
      *l1 = src - static_cast<float>(*i0);
    };
    parallel_for(h, [&](long begin, long end) {
      std::vector<float> at(channels + 1);
      for (long y = begin; y < end; ++y) {
        int y0, y1;
        float ly;
        source(static_cast<int>(y), oh, h, &y0, &y1, &ly);
        for (int x = 0; x < w; ++x) {
          const size_t k = static_cast<size_t>(y) * w + x;
          if (filled[k]) continue;
          int x0, x1;
          float lx;
          source(x, ow, w, &x0, &x1, &lx);
          for (int c = 0; c <= channels; ++c) {
            const float* p = pooled.data() + static_cast<size_t>(c) * oh * ow;
            at[c] = (1 - ly) * ((1 - lx) * p[y0 * ow + x0] + lx * p[y0 * ow + x1]) +
                    ly * ((1 - lx) * p[y1 * ow + x0] + lx * p[y1 * ow + x1]);
          }
          if (!(at[channels] > 1e-4f)) continue;
          for (int c = 0; c < channels; ++c) out[c * n + k] = at[c] / at[channels];
          filled[k] = 2;   // fresh at this scale; marked filled after the pass
        }
      }
    }, 16);
    for (auto& f : filled) f = f ? 1 : 0;
  }
  double total = 0;
  std::vector<double> sums(channels, 0.0);
  for (size_t k = 0; k < n; ++k) {
    total += weight[k];
    for (int c = 0; c < channels; ++c) sums[c] += static_cast<double>(values[c * n + k]) * weight[k];
  }
  for (int c = 0; c < channels; ++c) {
    const float whole = static_cast<float>(sums[c] / std::max(total, 1e-9));
    for (size_t k = 0; k < n; ++k)
      if (!filled[k]) out[c * n + k] = whole;
  }
  return out;
}

void reconstruct_highlights(float* lin, int height, int width) {
  constexpr float kClipLevel = 0.97f;   // kernels/postprocess.py: CLIP_LEVEL
  const size_t n = static_cast<size_t>(height) * width;
  std::vector<uint8_t> partly(n);
  std::vector<float> weight(n), log_ratio(3 * n);
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
    for (long k = begin; k < end; ++k) {
      const float r = lin[k], g = lin[n + k], b = lin[2 * n + k];
      const bool cr = r >= kClipLevel, cg = g >= kClipLevel, cb = b >= kClipLevel;
      partly[k] = (cr || cg || cb) && !(cr && cg && cb);
      const float mean = (r + g + b) / 3;
      weight[k] = !(cr || cg || cb) && mean > 1e-3f ? mean : 0.0f;   // brighter neighbours count more
      for (int c = 0; c < 3; ++c)
        log_ratio[c * n + k] = std::log(std::max(lin[c * n + k], 1e-6f) / std::max(mean, 1e-6f));
    }
  });
  if (std::find(partly.begin(), partly.end(), 1) == partly.end()) return;
  std::vector<float> ratio = spread(log_ratio.data(), 3, weight.data(), height, width);
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
  for (long k = begin; k < end; ++k) {
    if (!partly[k]) continue;
    float sum = 0, free = 0;
    for (int c = 0; c < 3; ++c) {
      ratio[c * n + k] = std::exp(ratio[c * n + k]);
      if (lin[c * n + k] < kClipLevel) {
        sum += lin[c * n + k] / ratio[c * n + k];
        free += 1;
      }
    }
    const float scale = sum / std::max(free, 1.0f);
    for (int c = 0; c < 3; ++c)
      if (lin[c * n + k] >= kClipLevel) lin[c * n + k] = std::max(lin[c * n + k], scale * ratio[c * n + k]);
  }
  });
}

// After reconstruct_highlights: the matrix, the gain, compress_highlights (kernels/postprocess.py)
// instead of the per-channel clip, the curve, the look. Branch-free so that it vectorises: for a peak
// at or below 1, dividing by max(peak, 1) and whitening by 1 - 1 / max(peak, 1) change nothing, exactly.
template <bool kNatural>
static inline void compress_range(float* rgb, size_t n, size_t begin, size_t end, const float* m, float gain) {
  float* r = rgb;
  float* g = rgb + n;
  float* b = rgb + 2 * n;
  for (size_t k = begin; k < end; ++k) {
    const float l[3] = {r[k], g[k], b[k]};
    float v[3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) v[i] = std::max((m[3 * i] * l[0] + m[3 * i + 1] * l[1] + m[3 * i + 2] * l[2]) * gain, 0.0f);
    const float peak = std::max(std::max(v[0], v[1]), std::max(v[2], 1.0f));
    float out[3];
#pragma GCC unroll 3
    for (int i = 0; i < 3; ++i) {
      const float scaled = v[i] / peak;   // hue kept, then towards white by 1 - 1/peak
      const float y = srgb_encode(clamp01(scaled + (1 - scaled) * (1 - 1 / peak)));
      out[i] = kNatural ? y * y * (3 - 2 * y) : y;
    }
    r[k] = out[0];
    g[k] = out[1];
    b[k] = out[2];
  }
}

EDGE4K_SIMD_CLONES static void compress_natural(float* rgb, size_t n, size_t begin, size_t end, const float* m,
                                               float gain) {
  compress_range<true>(rgb, n, begin, end, m, gain);
}

EDGE4K_SIMD_CLONES static void compress_neutral(float* rgb, size_t n, size_t begin, size_t end, const float* m,
                                               float gain) {
  compress_range<false>(rgb, n, begin, end, m, gain);
}

// finish() with highlights reconstructed: square, reconstruct_highlights, then compress_range.
static void finish_reconstructed(float* rgb, int height, int width, const float* m, float gain, bool natural) {
  const size_t n = static_cast<size_t>(height) * width;
  parallel_for(static_cast<long>(3 * n), [&](long begin, long end) {
    for (long k = begin; k < end; ++k) rgb[k] = clamp01(rgb[k]) * clamp01(rgb[k]);
  });
  reconstruct_highlights(rgb, height, width);
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
    if (natural)
      compress_natural(rgb, n, begin, end, m, gain);
    else
      compress_neutral(rgb, n, begin, end, m, gain);
  });
}

void finish(float* rgb, int height, int width, const double* srgb_from_cam, double exposure, Look look, double ev,
            Highlights highlights) {
  const size_t n = static_cast<size_t>(height) * width;
  float m[9];
  for (int k = 0; k < 9; ++k) m[k] = static_cast<float>(srgb_from_cam[k]);
  // float32 as torch multiplies them: the look's gain, times 2^ev
  const float gain = static_cast<float>(look == Look::Natural ? exposure : 1.0) * static_cast<float>(std::exp2(ev));
  if (highlights == Highlights::Reconstruct) {
    finish_reconstructed(rgb, height, width, m, gain, look == Look::Natural);
    return;
  }
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
    if (look == Look::Natural)
      finish_natural(rgb, n, begin, end, m, gain);
    else
      finish_neutral(rgb, n, begin, end, m, gain);
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

// quantise() for one bit depth: planar float -> interleaved integers.
template <typename T>
static inline void quantise_range(const float* rgb, size_t n, size_t begin, size_t end, T* out) {
  const float peak = static_cast<float>(std::numeric_limits<T>::max());
  const float* r = rgb;
  const float* g = rgb + n;
  const float* b = rgb + 2 * n;
  for (size_t k = begin; k < end; ++k) {
    out[k * 3] = static_cast<T>(round_half_even(clamp01(r[k]) * peak));
    out[k * 3 + 1] = static_cast<T>(round_half_even(clamp01(g[k]) * peak));
    out[k * 3 + 2] = static_cast<T>(round_half_even(clamp01(b[k]) * peak));
  }
}

EDGE4K_SIMD_CLONES static void quantise8(const float* rgb, size_t n, size_t begin, size_t end, uint8_t* out) {
  quantise_range(rgb, n, begin, end, out);
}

EDGE4K_SIMD_CLONES static void quantise16(const float* rgb, size_t n, size_t begin, size_t end, uint16_t* out) {
  quantise_range(rgb, n, begin, end, out);
}

// bits 32: float32, interleaved as they are (kernels/cpp.py: to_pixels, the float TIFF's samples).
static void interleave(const float* rgb, size_t n, size_t begin, size_t end, float* out) {
  for (size_t k = begin; k < end; ++k)
    for (size_t c = 0; c < 3; ++c) out[k * 3 + c] = rgb[c * n + k];
}

void quantise(const float* rgb, int height, int width, int bits, void* out) {
  if (bits != 8 && bits != 16 && bits != 32)
    throw Error("bit depth must be 8, 16 or 32 (float), got " + std::to_string(bits));
  const size_t n = static_cast<size_t>(height) * width;
  parallel_for(static_cast<long>(n), [&](long begin, long end) {
    if (bits == 8)
      quantise8(rgb, n, begin, end, static_cast<uint8_t*>(out));
    else if (bits == 16)
      quantise16(rgb, n, begin, end, static_cast<uint16_t*>(out));
    else
      interleave(rgb, n, begin, end, static_cast<float*>(out));
  });
}

std::pair<int, int> output_size(const BayerFrame& frame) {
  return frame.orientation >= 5 ? std::make_pair(frame.height, frame.width) : std::make_pair(frame.width, frame.height);
}

void postprocess(float* image, const BayerFrame& frame, double exposure, Look look, int bits, void* out,
                 const Finishing& finishing) {
  const int h = frame.height, w = frame.width;
  double matrix[9];
  target_from_cam(finishing.space, frame.srgb_from_cam, matrix);
  finish(image, h, w, matrix, exposure, look, finishing.ev, finishing.highlights);
  encode_space(finishing.space, image, static_cast<size_t>(3) * h * w);
  const auto [ow, oh] = output_size(frame);
  if (frame.orientation == 1) {
    quantise(image, oh, ow, bits, out);
  } else {
    const auto upright = orient(image, h, w, frame.orientation);
    quantise(upright.data(), oh, ow, bits, out);
  }
}

}  // namespace edge4k
