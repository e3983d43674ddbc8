// Output colour spaces; see colourspace.h. Matrices in double, as numpy computes them.
#include "colourspace.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace edge4k {
namespace {

struct Space {
  const char* name;
  const char* description;
  double primaries[3][2];
  double white[2];
  enum Curve { Srgb, Gamma, Linear } curve;
  int gamma_fixed8;   // kernels/icc.py: u8fixed8(gamma), for Curve::Gamma
  int min_bits;
};

constexpr double kD65[2] = {0.3127, 0.3290}, kD50[2] = {0.3457, 0.3585};

// kernels/colourspace.py: OUTPUT_SPACES (u8fixed8(563 / 256) = 563, u8fixed8(1.8) = 461).
const Space kSpaces[] = {
    {"srgb", "sRGB", {{0.64, 0.33}, {0.30, 0.60}, {0.15, 0.06}}, {kD65[0], kD65[1]}, Space::Srgb, 0, 8},
    {"display-p3", "Display P3", {{0.680, 0.320}, {0.265, 0.690}, {0.150, 0.060}}, {kD65[0], kD65[1]}, Space::Srgb, 0,
     8},
    {"adobe-rgb", "Adobe RGB (1998) compatible", {{0.64, 0.33}, {0.21, 0.71}, {0.15, 0.06}}, {kD65[0], kD65[1]},
     Space::Gamma, 563, 8},
    {"prophoto", "ProPhoto RGB (ROMM) compatible", {{0.7347, 0.2653}, {0.1596, 0.8404}, {0.0366, 0.0001}},
     {kD50[0], kD50[1]}, Space::Gamma, 461, 16},
    {"rec2020-linear", "Rec. ITU-R BT.2020 linear", {{0.708, 0.292}, {0.170, 0.797}, {0.131, 0.046}},
     {kD65[0], kD65[1]}, Space::Linear, 0, 16},
};

const Space& space_of(OutputSpace s) { return kSpaces[static_cast<int>(s)]; }

using M3 = double[3][3];

void multiply(const M3 a, const M3 b, M3 out) {
  M3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) r[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
  std::copy(&r[0][0], &r[0][0] + 9, &out[0][0]);
}

void invert(const M3 m, M3 out) {
  const double det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
                     m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
                     m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  M3 r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const int a = (j + 1) % 3, b = (j + 2) % 3, c = (i + 1) % 3, d = (i + 2) % 3;
      r[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det;
    }
  std::copy(&r[0][0], &r[0][0] + 9, &out[0][0]);
}

// kernels/colour.py: xyz_white.
void xyz_white(const double* xy, double* out) {
  out[0] = xy[0] / xy[1];
  out[1] = 1.0;
  out[2] = (1.0 - xy[0] - xy[1]) / xy[1];
}

// kernels/colour.py: adaptation (Bradford).
void adaptation(const double* src_xy, const double* dst_xy, M3 out) {
  static const M3 kBradford = {{0.8951, 0.2664, -0.1614}, {-0.7502, 1.7135, 0.0367}, {0.0389, -0.0685, 1.0296}};
  double ws[3], wd[3], s[3], d[3];
  xyz_white(src_xy, ws);
  xyz_white(dst_xy, wd);
  for (int i = 0; i < 3; ++i) {
    s[i] = kBradford[i][0] * ws[0] + kBradford[i][1] * ws[1] + kBradford[i][2] * ws[2];
    d[i] = kBradford[i][0] * wd[0] + kBradford[i][1] * wd[1] + kBradford[i][2] * wd[2];
  }
  M3 scaled, inverse;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) scaled[i][j] = d[i] / s[i] * kBradford[i][j];
  invert(kBradford, inverse);
  multiply(inverse, scaled, out);
}

// kernels/icc.py: normalised_primary_matrix.
void normalised_primary_matrix(const Space& s, M3 out) {
  M3 p, inverse;
  for (int c = 0; c < 3; ++c) {
    const double x = s.primaries[c][0], y = s.primaries[c][1];
    p[0][c] = x / y;
    p[1][c] = 1.0;
    p[2][c] = (1 - x - y) / y;
  }
  double w[3], scale[3];
  xyz_white(s.white, w);
  invert(p, inverse);
  for (int i = 0; i < 3; ++i) scale[i] = inverse[i][0] * w[0] + inverse[i][1] * w[1] + inverse[i][2] * w[2];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) out[i][j] = p[i][j] * scale[j];
}

void put32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}

void put16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xFF);
}

// kernels/icc.py: s15fixed16 (Python's round: half to even, as nearbyint is by default).
void s15fixed16(std::string& out, const double* values, int n) {
  for (int i = 0; i < n; ++i) put32(out, static_cast<uint32_t>(static_cast<int32_t>(std::nearbyint(values[i] * 65536))));
}

std::string xyz_tag(const double* xyz) {
  std::string t("XYZ \0\0\0\0", 8);
  s15fixed16(t, xyz, 3);
  return t;
}

std::string curve_tag(const Space& s) {
  std::string t("curv\0\0\0\0", 8);
  if (s.curve == Space::Linear) {
    put32(t, 0);
  } else if (s.curve == Space::Gamma) {
    put32(t, 1);
    put16(t, static_cast<uint16_t>(s.gamma_fixed8));
    t += std::string(2, '\0');
  } else {   // kernels/colourspace.py: srgb_curve_table(1024), numpy's linspace and srgb_decode
    constexpr int n = 1024;
    put32(t, n);
    const double step = 1.0 / (n - 1);
    for (int i = 0; i < n; ++i) {
      const double x = i == n - 1 ? 1.0 : i * step;
      const double v = x <= 0.04045 ? x / 12.92 : std::pow((std::max(x, 0.04045) + 0.055) / 1.055, 2.4);
      put16(t, static_cast<uint16_t>(std::nearbyint(std::clamp(v, 0.0, 1.0) * 65535)));
    }
  }
  t += std::string((4 - t.size() % 4) % 4, '\0');
  return t;
}

std::string text_tag(const std::string& text) { return std::string("text\0\0\0\0", 8) + text + std::string(1, '\0'); }

std::string desc_tag(const std::string& text) {
  std::string t("desc\0\0\0\0", 8);
  put32(t, static_cast<uint32_t>(text.size() + 1));
  t += text + std::string(1, '\0');
  put32(t, 0);
  put32(t, 0);
  put16(t, 0);
  t += std::string(1 + 67, '\0');
  return t;
}

}  // namespace

OutputSpace parse_output_space(const std::string& name) {
  for (int k = 0; k < 5; ++k)
    if (name == kSpaces[k].name) return static_cast<OutputSpace>(k);
  throw Error("unknown output space '" + name + "'; valid: srgb, display-p3, adobe-rgb, prophoto, rec2020-linear");
}

const char* output_space_name(OutputSpace space) { return space_of(space).name; }
const char* output_space_description(OutputSpace space) { return space_of(space).description; }
int output_space_min_bits(OutputSpace space) { return space_of(space).min_bits; }

void target_from_cam(OutputSpace space, const double* srgb_from_cam, double* out) {
  M3 m;
  std::copy(srgb_from_cam, srgb_from_cam + 9, &m[0][0]);
  if (space != OutputSpace::Srgb) {   // kernels/colourspace.py: space_from_srgb
    static const M3 kXyzFromSrgb = {
        {0.4124564, 0.3575761, 0.1804375}, {0.2126729, 0.7151522, 0.0721750}, {0.0193339, 0.1191920, 0.9503041}};
    const Space& s = space_of(space);
    M3 adapt, xyz, npm, inverse, from_srgb;
    adaptation(kD65, s.white, adapt);
    multiply(adapt, kXyzFromSrgb, xyz);
    normalised_primary_matrix(s, npm);
    invert(npm, inverse);
    multiply(inverse, xyz, from_srgb);
    multiply(from_srgb, m, m);
  }
  std::copy(&m[0][0], &m[0][0] + 9, out);
}

void encode_space(OutputSpace space, float* rgb, size_t count) {
  const Space& s = space_of(space);
  if (s.curve == Space::Srgb) return;
  // numpy's float32 arithmetic: kernels/colour.py srgb_decode, then x ** (1 / gamma).
  const float inverse_gamma = s.curve == Space::Gamma ? static_cast<float>(256.0 / s.gamma_fixed8) : 1.0f;
  parallel_for(static_cast<long>(count), [&](long begin, long end) {
    for (long k = begin; k < end; ++k) {
      const float x = rgb[k];
      float v = x <= 0.04045f ? x / 12.92f : std::pow((std::max(x, 0.04045f) + 0.055f) / 1.055f, 2.4f);
      if (s.curve == Space::Gamma) v = std::pow(v, inverse_gamma);
      rgb[k] = v;
    }
  });
}

std::string icc_profile(OutputSpace space) {
  if (space == OutputSpace::Srgb) return "";
  const Space& s = space_of(space);
  // kernels/icc.py: matrix_trc_profile, D50_XYZ, DATE.
  const double d50_xyz[3] = {0.9642, 1.0, 0.8249};
  const double sum = d50_xyz[0] + d50_xyz[1] + d50_xyz[2], d50_xy[2] = {d50_xyz[0] / sum, 1.0 / sum};
  M3 adapt, npm, cols;
  adaptation(s.white, d50_xy, adapt);
  normalised_primary_matrix(s, npm);
  multiply(adapt, npm, cols);
  double white[3], column[3][3];
  xyz_white(s.white, white);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 3; ++i) column[c][i] = cols[i][c];
  const std::string trc = curve_tag(s);
  const std::pair<const char*, std::string> tags[] = {
      {"desc", desc_tag(s.description)}, {"cprt", text_tag("No copyright, use freely")}, {"wtpt", xyz_tag(white)},
      {"rXYZ", xyz_tag(column[0])}, {"gXYZ", xyz_tag(column[1])}, {"bXYZ", xyz_tag(column[2])},
      {"rTRC", trc}, {"gTRC", trc}, {"bTRC", trc}};
  constexpr int kTags = 9, kHeader = 128;
  const uint32_t offset = kHeader + 4 + 12 * kTags;
  std::string table, data;
  put32(table, kTags);
  for (const auto& [signature, body] : tags) {
    table += signature;
    put32(table, offset + static_cast<uint32_t>(data.size()));
    put32(table, static_cast<uint32_t>(body.size()));
    data += body + std::string((4 - body.size() % 4) % 4, '\0');
  }
  std::string header;
  put32(header, offset + static_cast<uint32_t>(data.size()));
  header += std::string(4, '\0');
  put32(header, 0x02400000);
  header += "mntrRGB XYZ ";
  for (int v : {2000, 1, 1, 0, 0, 0}) put16(header, static_cast<uint16_t>(v));
  header += "acsp" + std::string(4, '\0');
  put32(header, 0);
  header += std::string(16, '\0');
  put32(header, 0);
  s15fixed16(header, d50_xyz, 3);
  header += "e4k " + std::string(44, '\0');
  return header + table + data;
}

}  // namespace edge4k
