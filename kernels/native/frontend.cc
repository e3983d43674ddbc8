// raw_preprocess kernels; see frontend.h. Built with -ffp-contract=off: no fused
// multiply-add, so every float operation rounds where the Python one does.
#include "frontend.h"

#include <algorithm>
#include <cmath>

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
  cfa_offsets(f.cfa);
  for (double black : f.black_level)
    if (!(f.white_level > black))
      throw Error("white level " + std::to_string(f.white_level) + " is not above the black level " +
                  std::to_string(black));
}

std::vector<std::pair<int, int>> cfa_offsets(const std::string& cfa) {
  if (cfa != "RGGB" && cfa != "BGGR" && cfa != "GRBG" && cfa != "GBRG")
    throw Error("CFA '" + cfa + "' is not a 2x2 Bayer pattern (RGGB, BGGR, GRBG or GBRG)");
  auto where = [&](char colour) {
    int k = static_cast<int>(cfa.find(colour));
    return std::make_pair(k / 2, k % 2);
  };
  auto r = where('R'), b = where('B');
  return {r, {r.first, 1 - r.second}, {b.first, 1 - b.second}, b};
}

std::vector<float> pack(const BayerFrame& f) {
  check_frame(f);
  const int h = f.height / 2, w = f.width / 2;
  const double gains[4] = {f.wb_gains[0], f.wb_gains[1], f.wb_gains[1], f.wb_gains[2]};
  const auto offsets = cfa_offsets(f.cfa);
  std::vector<float> out(static_cast<size_t>(4) * h * w);
  for (int c = 0; c < 4; ++c) {
    const double black = f.black_level[c], range = f.white_level - black;
    const auto [i, j] = offsets[c];
    float* plane = out.data() + static_cast<size_t>(c) * h * w;
    for (int y = 0; y < h; ++y) {
      const uint16_t* row = f.bayer.data() + static_cast<size_t>(2 * y + i) * f.width + j;
      for (int x = 0; x < w; ++x) {
        double v = (static_cast<double>(row[2 * x]) - black) / range;
        plane[static_cast<size_t>(y) * w + x] = static_cast<float>(std::clamp(v, 0.0, 1.0) * gains[c]);
      }
    }
  }
  return out;
}

std::vector<float> thumbnail(const float* packed, int channels, int height, int width, int size) {
  std::vector<float> out(static_cast<size_t>(channels) * size * size);
  auto start = [](int i, int in, int n) { return static_cast<int>((static_cast<int64_t>(i) * in) / n); };
  auto end = [](int i, int in, int n) {
    return static_cast<int>((static_cast<int64_t>(i + 1) * in + n - 1) / n);
  };
  for (int c = 0; c < channels; ++c) {
    const float* plane = packed + static_cast<size_t>(c) * height * width;
    for (int oy = 0; oy < size; ++oy) {
      const int y0 = start(oy, height, size), y1 = end(oy, height, size);
      for (int ox = 0; ox < size; ++ox) {
        const int x0 = start(ox, width, size), x1 = end(ox, width, size);
        float sum = 0;
        for (int y = y0; y < y1; ++y)
          for (int x = x0; x < x1; ++x) sum += plane[static_cast<size_t>(y) * width + x];
        out[(static_cast<size_t>(c) * size + oy) * size + ox] = sum / (y1 - y0) / (x1 - x0);
      }
    }
  }
  return out;
}

std::vector<float> meta_vector(const BayerFrame& f) {
  std::vector<float> meta(f.wb_gains, f.wb_gains + 3);
  meta.insert(meta.end(), f.srgb_from_cam, f.srgb_from_cam + 9);
  return meta;
}

FrontendOutput frontend(const BayerFrame& frame, int padded_height, int padded_width, int thumb_size) {
  FrontendOutput out;
  const auto packed = pack(frame);
  const int h = frame.height / 2, w = frame.width / 2;
  out.thumb = thumbnail(packed.data(), 4, h, w, thumb_size);
  out.meta = meta_vector(frame);
  out.packed = pad_reflect(packed.data(), 4, h, w, padded_height / 2, padded_width / 2);
  return out;
}

}  // namespace edge4k
