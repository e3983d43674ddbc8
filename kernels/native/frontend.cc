// raw_preprocess kernels; see frontend.h. Built with -ffp-contract=off: no fused
// multiply-add, so every float operation rounds where the Python one does.
#include "frontend.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "tiling.h"

namespace edge4k {

void check_frame(const BayerFrame& f) {
  if (f.width % 2 || f.height % 2 || f.width <= 0 || f.height <= 0)
    throw Error("frame size " + std::to_string(f.width) + "x" + std::to_string(f.height) +
                " is not even and positive");
  if (f.bayer.size() != static_cast<size_t>(f.width) * f.height)
    throw Error("Bayer buffer holds " + std::to_string(f.bayer.size()) + " samples, expected " +
                std::to_string(static_cast<size_t>(f.width) * f.height) + " for " + std::to_string(f.width) + "x" +
                std::to_string(f.height));
  phase_origin(f.cfa);
  for (double black : f.black_level)
    if (!(f.white_level > black))
      throw Error("white level " + std::to_string(f.white_level) + " is not above the black level " +
                  std::to_string(black));
  for (double gain : f.wb_gains)
    if (!(gain > 0) || !std::isfinite(gain)) throw Error("white-balance gains must be positive and finite");
  if (f.orientation < 1 || f.orientation > 8)
    throw Error("orientation must be an EXIF Orientation 1..8, got " + std::to_string(f.orientation));
}

std::pair<int, int> phase_origin(const std::string& cfa) {
  if (cfa != "RGGB" && cfa != "BGGR" && cfa != "GRBG" && cfa != "GBRG")
    throw Error("CFA '" + cfa + "' is not a 2x2 Bayer pattern (RGGB, BGGR, GRBG or GBRG)");
  const int r = static_cast<int>(cfa.find('R'));
  return {2 + r / 2, 2 + r % 2};
}

// numpy's "reflect" index for i in [-n + 1, 2n - 1): mirror about the edge samples.
static int mirror(int i, int n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

// pack() into the top-left (H+6)/2 x (W+6)/2 of each plane of out, a (4, rows, cols) buffer.
// Each channel's mapping of a 16-bit sample is a fixed function, so it is tabulated once (the
// same arithmetic, so the same bits) and each site is one table read.
static void pack_into(const BayerFrame& f, float* out, int rows, int cols) {
  check_frame(f);
  const auto [top, left] = phase_origin(f.cfa);
  const int h = (f.height + PHASE_PAD) / 2, w = (f.width + PHASE_PAD) / 2;
  const double smallest = std::min({f.wb_gains[0], f.wb_gains[1], f.wb_gains[2]});
  const double gains[4] = {f.wb_gains[0] / smallest, f.wb_gains[1] / smallest, f.wb_gains[1] / smallest,
                           f.wb_gains[2] / smallest};
  constexpr long kLevels = 65536;
  std::vector<float> table(4 * kLevels);
  parallel_for(4 * kLevels, [&](long begin, long end) {
    for (long k = begin; k < end; ++k) {
      const int c = static_cast<int>(k / kLevels);
      const double black = f.black_level[c];
      const double scale = static_cast<float>(gains[c] / (f.white_level - black));
      const double v = (static_cast<double>(k % kLevels) - black) * scale;
      table[k] = std::sqrt(static_cast<float>(std::clamp(v, 0.0, 1.0)));
    }
  });
  parallel_for(4L * h, [&](long begin, long end) {
    for (long r = begin; r < end; ++r) {
      // After padding the red site is at (0, 0): channel c sits at (c / 2, c % 2) of each cell.
      const int c = static_cast<int>(r / h), y = static_cast<int>(r % h), dx = c % 2 - left;
      const float* lut = table.data() + c * kLevels;
      const uint16_t* row = f.bayer.data() + static_cast<size_t>(mirror(2 * y + c / 2 - top, f.height)) * f.width;
      float* plane = out + (static_cast<size_t>(c) * rows + y) * cols;
      // Sites inside the frame need no mirroring: x from first to last - 1.
      const int first = std::min(w, (1 - dx) / 2), last = std::max(first, std::min(w, (f.width - dx + 1) / 2));
      for (int x = 0; x < first; ++x) plane[x] = lut[row[mirror(2 * x + dx, f.width)]];
      for (int x = first; x < last; ++x) plane[x] = lut[row[2 * x + dx]];
      for (int x = last; x < w; ++x) plane[x] = lut[row[mirror(2 * x + dx, f.width)]];
    }
  }, 16);
}

std::vector<float> pack(const BayerFrame& f) {
  const int h = (f.height + PHASE_PAD) / 2, w = (f.width + PHASE_PAD) / 2;
  std::vector<float> out(static_cast<size_t>(4) * h * w);
  pack_into(f, out.data(), h, w);
  return out;
}

std::vector<float> thumbnail(const float* packed, int channels, int height, int width, int size, int rows, int cols) {
  rows = rows ? rows : height;
  cols = cols ? cols : width;
  std::vector<float> out(static_cast<size_t>(channels) * size * size);
  auto start = [](int i, int in, int n) { return static_cast<int>((static_cast<int64_t>(i) * in) / n); };
  auto end = [](int i, int in, int n) {
    return static_cast<int>((static_cast<int64_t>(i + 1) * in + n - 1) / n);
  };
  parallel_for(static_cast<long>(channels) * size, [&](long begin, long stop) {
    for (long r = begin; r < stop; ++r) {
      const int c = static_cast<int>(r / size), oy = static_cast<int>(r % size);
      const float* plane = packed + static_cast<size_t>(c) * rows * cols;
      const int y0 = start(oy, height, size), y1 = end(oy, height, size);
      for (int ox = 0; ox < size; ++ox) {
        const int x0 = start(ox, width, size), x1 = end(ox, width, size);
        float sum = 0;
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) sum += plane[static_cast<size_t>(y) * cols + x];
        out[(static_cast<size_t>(c) * size + oy) * size + ox] = sum / (y1 - y0) / (x1 - x0);
      }
    }
  }, 1);
  return out;
}

// numpy's default (linear) quantile of values already sorted.
static double quantile_of_sorted(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) throw Error("quantile of no values");
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

// numpy's default (linear) quantile of values, which it sorts.
static double quantile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return quantile_of_sorted(values, q);
}

std::pair<double, double> noise_estimate(const float* packed, int height, int width, int rows, int cols) {
  // kernels/raw.py: NOISE_BINS, NOISE_BLOCK, NOISE_QUANTILE, _NOISE_QUANTILE_BIAS.
  constexpr int kBins = 8, kBlock = 8;
  constexpr double kQuantile = 0.2, kBias = 0.8478;
  rows = rows ? rows : height;
  cols = cols ? cols : width;
  const float* gr = packed + static_cast<size_t>(rows) * cols;
  const float* gb = gr + static_cast<size_t>(rows) * cols;
  // Each block row's (level, variance) pairs, in block order; block rows in parallel.
  const int block_rows = height / kBlock;
  std::vector<std::vector<double>> row_levels(block_rows), row_variances(block_rows);
  parallel_for(block_rows, [&](long begin, long end) {
    double d[kBlock * kBlock];
    for (long r = begin; r < end; ++r) {
      const int by = static_cast<int>(r) * kBlock;
      for (int bx = 0; bx + kBlock <= width; bx += kBlock) {
        double level = 0, mean = 0;
        for (int y = 0, k = 0; y < kBlock; ++y)
          for (int x = 0; x < kBlock; ++x, ++k) {
            const size_t i = static_cast<size_t>(by + y) * cols + bx + x;
            const double a = static_cast<double>(gr[i]) * gr[i], b = static_cast<double>(gb[i]) * gb[i];  // linear
            d[k] = (a - b) / std::sqrt(2.0);
            level += (a + b) / 2;
            mean += d[k];
          }
        level /= kBlock * kBlock;
        mean /= kBlock * kBlock;
        if (!(level > 1e-3 && level < 0.85)) continue;   // away from the clip at 0 and at the white level
        double var = 0;
        for (double v : d) var += (v - mean) * (v - mean);
        row_levels[r].push_back(level);
        row_variances[r].push_back(var / (kBlock * kBlock - 1));
      }
    }
  }, 8);
  std::vector<double> levels, variances;
  for (int r = 0; r < block_rows; ++r) {
    levels.insert(levels.end(), row_levels[r].begin(), row_levels[r].end());
    variances.insert(variances.end(), row_variances[r].begin(), row_variances[r].end());
  }
  const size_t n = levels.size();
  if (n < 4 * kBins) return {0.0, 0.0};
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return levels[a] < levels[b]; });
  double means[kBins], quantiles[kBins];
  for (size_t bin = 0, first = 0; bin < kBins; ++bin) {   // numpy's array_split: the first n % bins get one more
    const size_t count = n / kBins + (bin < n % kBins ? 1 : 0);
    double sum = 0;
    std::vector<double> chunk;
    for (size_t k = first; k < first + count; ++k) {
      sum += levels[order[k]];
      chunk.push_back(variances[order[k]]);
    }
    means[bin] = sum / static_cast<double>(count);
    quantiles[bin] = quantile(chunk, kQuantile) / kBias;
    first += count;
  }
  double mx = 0, my = 0, sxx = 0, sxy = 0;   // least-squares line (numpy.polyfit, degree 1)
  for (int k = 0; k < kBins; ++k) mx += means[k] / kBins, my += quantiles[k] / kBins;
  for (int k = 0; k < kBins; ++k) {
    sxx += (means[k] - mx) * (means[k] - mx);
    sxy += (means[k] - mx) * (quantiles[k] - my);
  }
  const double shot = sxx > 0 ? sxy / sxx : 0.0, read = my - shot * mx;
  return {std::max(shot, 0.0), std::max(read, 0.0)};
}

// Linear-sRGB luminance of a thumbnail (each channel clipped to [0, 1] first), sorted, with its
// mean: what both meters read.
struct Luminance {
  std::vector<double> sorted;
  std::vector<double> peak;   // each pixel's largest channel, unclipped, sorted
  double mean = 0;
};

static Luminance thumb_luminance(const float* thumb, int size, const double* m) {
  static const double kLuma[3] = {0.2126729, 0.7151522, 0.072175};   // kernels/colour.py: LUMA
  const size_t n = static_cast<size_t>(size) * size;
  Luminance y;
  y.sorted.resize(n);
  y.peak.resize(n);
  for (size_t k = 0; k < n; ++k) {
    auto lin = [&](int c) { return static_cast<double>(thumb[c * n + k]) * thumb[c * n + k]; };
    const double cam[3] = {lin(0), (lin(1) + lin(2)) / 2, lin(3)};
    double v = 0, peak = 0;
    for (int i = 0; i < 3; ++i) {
      const double rgb = std::max(m[3 * i] * cam[0] + m[3 * i + 1] * cam[1] + m[3 * i + 2] * cam[2], 0.0);
      v += std::min(rgb, 1.0) * kLuma[i];
      peak = std::max(peak, rgb);
    }
    y.sorted[k] = v;
    y.peak[k] = peak;
    y.mean += v;
  }
  y.mean /= static_cast<double>(n);
  std::sort(y.sorted.begin(), y.sorted.end());
  std::sort(y.peak.begin(), y.peak.end());
  return y;
}

static double gain_by_mean(const Luminance& y) {
  const double gain = std::min(0.18 / std::max(y.mean, 1e-6), 1.0 / std::max(quantile_of_sorted(y.sorted, 0.98), 1e-6));
  return std::clamp(gain, 1.0, 16.0);
}

static double gain_metered(const Luminance& y) {
  // kernels/rawcolour.py: HIGHLIGHT_PERCENTILE, HIGHLIGHT_TARGET, MID_GREY, KEY_LOW, KEY_HIGH,
  // MEAN_CLIP_PERCENTILE, CLIP_PERCENTILE.
  const double mean = std::max(y.mean, 1e-6), high = std::max(quantile_of_sorted(y.sorted, 0.99), 1e-6);
  const double by_mean = std::min(0.18 / mean, 1.0 / std::max(quantile_of_sorted(y.peak, 0.98), 1e-6));
  const double w = std::clamp((mean / high - 0.45) / (0.65 - 0.45), 0.0, 1.0);
  const double gain = std::pow(by_mean, 1.0 - w) * std::pow(0.85 / high, w);
  return std::clamp(std::min(gain, 1.0 / std::max(quantile_of_sorted(y.peak, 0.999), 1e-6)), 1.0, 16.0);
}

double exposure_gain(const float* thumb, int size, const double* m) {
  return gain_by_mean(thumb_luminance(thumb, size, m));
}

double metered_gain(const float* thumb, int size, const double* m) {
  return gain_metered(thumb_luminance(thumb, size, m));
}

std::vector<float> meta_vector(const BayerFrame& f, double shot, double read, double exposure) {
  // kernels/raw.py: META_CENTRE, META_SCALE (float32 there, so rounded to float here too), META_LIMIT.
  static const float kCentre[META_SIZE] = {-9.0f, -14.0f, 1.0f, 0.7f, 0.7f};
  static const float kScale[META_SIZE] = {3.0f, 4.0f, 1.0f, 0.5f, 0.5f};
  const double smallest = std::min({f.wb_gains[0], f.wb_gains[1], f.wb_gains[2]});
  const double values[META_SIZE] = {shot + 1e-6, read + 1e-9, exposure, f.wb_gains[0] / smallest,
                                    f.wb_gains[2] / smallest};
  std::vector<float> meta(META_SIZE);
  for (int k = 0; k < META_SIZE; ++k)
    meta[k] = static_cast<float>(std::clamp((std::log(values[k]) - kCentre[k]) / kScale[k], -3.0, 3.0));
  return meta;
}

FrontendOutput frontend(const BayerFrame& frame, int padded_height, int padded_width, int thumb_size,
                        float* packed_into) {
  FrontendOutput out;
  if (thumb_size < 1) throw Error("thumbnail size " + std::to_string(thumb_size) + " must be at least 1");
  const int h = (frame.height + PHASE_PAD) / 2, w = (frame.width + PHASE_PAD) / 2;
  const int rows = padded_height / 2, cols = padded_width / 2;
  if (rows < h || cols < w)
    throw Error("padded size " + std::to_string(padded_width) + "x" + std::to_string(padded_height) +
                " is smaller than the phase-padded frame " + std::to_string(2 * w) + "x" + std::to_string(2 * h));
  // Packed straight into the padded planes, which the reflection then completes.
  if (!packed_into) out.packed.resize(static_cast<size_t>(4) * rows * cols);
  float* packed = packed_into ? packed_into : out.packed.data();
  pack_into(frame, packed, rows, cols);
  out.thumb = thumbnail(packed, 4, h, w, thumb_size, rows, cols);
  const auto luminance = thumb_luminance(out.thumb.data(), thumb_size, frame.srgb_from_cam);
  out.exposure = gain_by_mean(luminance);
  out.metered = gain_metered(luminance);
  const auto [shot, read] = noise_estimate(packed, h, w, rows, cols);
  out.meta = meta_vector(frame, shot, read, out.exposure);
  std::tie(out.top, out.left) = phase_origin(frame.cfa);
  reflect_in_place(packed, 4, h, w, rows, cols);
  return out;
}

}  // namespace edge4k
