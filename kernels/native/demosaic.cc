#include "demosaic.h"

#include <string>
#include <vector>

namespace edge4k {
namespace {

// Malvar, He and Cutler (ICASSP 2004), "High-quality linear interpolation for demosaicing of
// Bayer-patterned color images": 5x5 gradient-corrected kernels (x 1/8), centred on the pixel.
// models/blocks.py spells the same kernels and plan (_MHC_*, _MHC_PLAN).
using Kernel = double[5][5];
constexpr Kernel kGAtRB = {{0, 0, -1, 0, 0}, {0, 0, 2, 0, 0}, {-1, 2, 4, 2, -1}, {0, 0, 2, 0, 0}, {0, 0, -1, 0, 0}};
constexpr Kernel kRow = {{0, 0, .5, 0, 0}, {0, -1, 0, -1, 0}, {-1, 4, 5, 4, -1}, {0, -1, 0, -1, 0}, {0, 0, .5, 0, 0}};
constexpr Kernel kDiag = {{0, 0, -1.5, 0, 0}, {0, 2, 0, 2, 0}, {-1.5, 0, 6, 0, -1.5}, {0, 2, 0, 2, 0}, {0, 0, -1.5, 0, 0}};
constexpr Kernel kIdentity = {{0}, {0}, {0, 0, 8, 0, 0}, {0}, {0}};

// Which kernel gives colour (R, G, B) at each site of an RGGB cell (R, Gr, Gb, B). Row: that
// colour's sites are the left/right neighbours, Col (Row transposed): above/below, Diag: the diagonals.
enum class Use { Identity, GAtRB, Row, Col, Diag };
constexpr Use kPlan[3][4] = {{Use::Identity, Use::Row, Use::Col, Use::Diag},
                             {Use::GAtRB, Use::Identity, Use::Identity, Use::GAtRB},
                             {Use::Diag, Use::Col, Use::Row, Use::Identity}};

double tap(Use use, int u, int v) {   // u, v: row and column offset in -2..2
  switch (use) {
    case Use::Identity: return kIdentity[u + 2][v + 2];
    case Use::GAtRB: return kGAtRB[u + 2][v + 2];
    case Use::Row: return kRow[u + 2][v + 2];
    case Use::Col: return kRow[v + 2][u + 2];
    case Use::Diag: return kDiag[u + 2][v + 2];
  }
  return 0;
}

int floor_half(int n) { return (n - (n & 1)) / 2; }   // Python's n // 2, n negative too

std::array<float, 432> build_weight() {
  std::array<double, 432> w{};
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 4; ++k) {
      const int a = k / 2, b = k % 2;   // the output site inside the cell
      for (int u = -2; u <= 2; ++u)
        for (int v = -2; v <= 2; ++v) {
          const double t = tap(kPlan[c][k], u, v) / 8;
          if (t == 0) continue;
          const int y = a + u, x = b + v;              // mosaic offset from the cell origin
          const int site = (y & 1) * 2 + (x & 1);      // packed channel that holds that pixel
          w[(((c * 4 + k) * 4 + site) * 3 + floor_half(y) + 1) * 3 + floor_half(x) + 1] += t;
        }
    }
  std::array<float, 432> out;
  for (size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(w[i]);
  return out;
}

struct Tap {
  int site, dy, dx;   // input plane and its offset (-1..1) from the output's packed pixel
  float weight;
};

// The non-zero weights of each output channel: 36 taps each in the weight, 9 to 11 used.
std::array<std::vector<Tap>, 12> tap_lists() {
  const auto& w = mhc_demosaic_weight();
  std::array<std::vector<Tap>, 12> taps;
  for (int o = 0; o < 12; ++o)
    for (int s = 0; s < 4; ++s)
      for (int dy = 0; dy < 3; ++dy)
        for (int dx = 0; dx < 3; ++dx)
          if (const float t = w[((o * 4 + s) * 3 + dy) * 3 + dx]; t != 0) taps[o].push_back({s, dy - 1, dx - 1, t});
  return taps;
}

}  // namespace

const std::array<float, 432>& mhc_demosaic_weight() {
  static const std::array<float, 432> w = build_weight();
  return w;
}

void add_mhc_base(const float* packed, int batch, int height, int width, float* rgb) {
  if (batch < 1 || height < 1 || width < 1)
    throw Error("packed tiles of " + std::to_string(batch) + "x4x" + std::to_string(height) + "x" +
                std::to_string(width) + " have no pixels to demosaic");
  static const auto taps = tap_lists();
  const size_t plane = static_cast<size_t>(height) * width, out_width = 2 * static_cast<size_t>(width);
  // Rows of packed pixels (batch x height) in parallel; each accumulates one output channel's row
  // at a time, a tap's whole shifted row at once (so the inner loop vectorises).
  parallel_for(static_cast<long>(batch) * height, [&](long begin, long end) {
    std::vector<float> acc(width);
    for (long row = begin; row < end; ++row) {
      const long n = row / height;
      const int i = static_cast<int>(row % height);
      const float* in = packed + n * 4 * plane;
      float* out = rgb + n * 3 * 4 * plane;
      for (int o = 0; o < 12; ++o) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (const Tap& t : taps[o]) {
          const int r = i + t.dy;
          if (r < 0 || r >= height) continue;   // zero padding at the tile's edge
          const float* src = in + t.site * plane + static_cast<size_t>(r) * width;
          const int j0 = std::max(0, -t.dx), j1 = std::min(width, width - t.dx);
          for (int j = j0; j < j1; ++j) acc[j] += t.weight * src[j + t.dx];
        }
        const int c = o / 4, a = (o % 4) / 2, b = o % 2;
        float* dst = out + c * 4 * plane + (2 * static_cast<size_t>(i) + a) * out_width + b;
        for (int j = 0; j < width; ++j) dst[2 * j] += acc[j];
      }
    }
  }, std::max(1L, 16384L / width));
}

}  // namespace edge4k
