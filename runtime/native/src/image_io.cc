#include "image_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <zlib.h>

#include "common.h"
#include "jpeg.h"

namespace edge4k {
namespace {

#include "srgb_icc.inc"

// SHA-256 as specified in FIPS 180-4.
class Sha256 {
 public:
  void update(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      block_[used_++] = data[i];
      if (used_ == 64) {
        compress();
        used_ = 0;
      }
    }
    bits_ += static_cast<uint64_t>(n) * 8;
  }
  std::string hex() {
    const uint64_t bits = bits_;
    const uint8_t one = 0x80, zero = 0;
    update(&one, 1);
    while (used_ != 56) update(&zero, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string out;
    char buf[9];
    for (uint32_t v : h_) {
      std::snprintf(buf, sizeof buf, "%08x", v);
      out += buf;
    }
    return out;
  }

 private:
  static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
  void compress() {
    static const uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t(block_[4 * i]) << 24) | (uint32_t(block_[4 * i + 1]) << 16) |
             (uint32_t(block_[4 * i + 2]) << 8) | uint32_t(block_[4 * i + 3]);
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    const uint32_t add[8] = {a, b, c, d, e, f, g, h};
    for (int i = 0; i < 8; ++i) h_[i] += add[i];
  }

  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t block_[64] = {};
  size_t used_ = 0;
  uint64_t bits_ = 0;
};

void put32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xFF);
}

void chunk(std::string& png, const char* type, const std::string& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  const size_t start = png.size();
  png += type;
  png += data;
  put32(png, static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(png.data() + start), png.size() - start)));
}

// zlib stream of bytes (real deflate, zlib's default level).
std::string deflate_bytes(const std::string& raw) {
  uLongf size = compressBound(raw.size());
  std::string z(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(&z[0]), &size, reinterpret_cast<const Bytef*>(raw.data()), raw.size(),
                Z_DEFAULT_COMPRESSION) != Z_OK)
    throw Error("zlib could not compress the image");
  z.resize(size);
  return z;
}

uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  return static_cast<uint8_t>(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

// PNG rows with a filter per row: of the five, the one whose output has the
// smallest sum of absolute (signed) bytes, the heuristic the PNG spec suggests.
std::string filter_rows(const uint8_t* data, size_t row, int height, int bpp) {
  std::string out;
  out.reserve((row + 1) * height);
  std::vector<uint8_t> zero(row, 0), candidate(row), best(row);
  for (int y = 0; y < height; ++y) {
    const uint8_t* cur = data + static_cast<size_t>(y) * row;
    const uint8_t* up = y ? cur - row : zero.data();
    long best_cost = -1;
    int best_type = 0;
    for (int type = 0; type < 5; ++type) {
      long cost = 0;
      for (size_t i = 0; i < row; ++i) {
        const int a = i >= static_cast<size_t>(bpp) ? cur[i - bpp] : 0, b = up[i];
        const int c = i >= static_cast<size_t>(bpp) ? up[i - bpp] : 0;
        const int pred = type == 0 ? 0 : type == 1 ? a : type == 2 ? b : type == 3 ? (a + b) / 2 : paeth(a, b, c);
        candidate[i] = static_cast<uint8_t>(cur[i] - pred);
        cost += std::abs(static_cast<int8_t>(candidate[i]));
      }
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best_type = type;
        best.swap(candidate);
      }
    }
    out += static_cast<char>(best_type);
    out.append(reinterpret_cast<const char*>(best.data()), row);
  }
  return out;
}

// (H, W, 3) samples as big-endian bytes for 16 bits (PNG, PPM), as they are for 8.
std::string samples_bytes(const void* pixels, int width, int height, int bits, bool big_endian) {
  const size_t n = static_cast<size_t>(width) * height * 3;
  if (bits == 8) return std::string(static_cast<const char*>(pixels), n);
  std::string out(2 * n, '\0');
  const auto* p = static_cast<const uint16_t*>(pixels);
  for (size_t i = 0; i < n; ++i) {
    out[2 * i + (big_endian ? 0 : 1)] = static_cast<char>(p[i] >> 8);
    out[2 * i + (big_endian ? 1 : 0)] = static_cast<char>(p[i] & 0xFF);
  }
  return out;
}

// An ICC profile: iCCP (the profile's name, compression method 0, the zlib stream); none: the sRGB
// chunk (rendering intent 0, perceptual), which says the same of sRGB in one byte. exif: eXIf's
// TIFF-structured block (exif_block()).
std::string encode_png(const void* pixels, int width, int height, int bits, const std::string& icc,
                       const std::string& icc_name, const std::string& exif) {
  const std::string samples = samples_bytes(pixels, width, height, bits, true);
  const size_t row = static_cast<size_t>(width) * 3 * (bits / 8);
  std::string ihdr;
  put32(ihdr, static_cast<uint32_t>(width));
  put32(ihdr, static_cast<uint32_t>(height));
  ihdr += static_cast<char>(bits);
  ihdr += std::string("\x02\x00\x00\x00", 4);   // RGB, deflate, adaptive filtering, no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  chunk(png, "IHDR", ihdr);
  if (icc.empty())
    chunk(png, "sRGB", std::string(1, '\0'));
  else
    chunk(png, "iCCP", icc_name + std::string(2, '\0') + deflate_bytes(icc));
  chunk(png, "eXIf", exif);
  chunk(png, "IDAT", deflate_bytes(filter_rows(reinterpret_cast<const uint8_t*>(samples.data()), row, height,
                                               3 * (bits / 8))));
  chunk(png, "IEND", "");
  return png;
}

// Horizontal differencing (TIFF predictor 2): each sample minus the same channel's
// sample one pixel to the left, modulo 2^bits, so smooth rows deflate well.
std::vector<uint16_t> horizontal_differences(const void* pixels, int width, int height, int bits) {
  const size_t row = static_cast<size_t>(width) * 3;
  std::vector<uint16_t> out(row * height);
  for (size_t i = 0; i < out.size(); ++i) {
    const uint16_t v = bits == 8 ? static_cast<const uint8_t*>(pixels)[i] : static_cast<const uint16_t*>(pixels)[i];
    const uint16_t left = i % row >= 3 ? (bits == 8 ? static_cast<const uint8_t*>(pixels)[i - 3]
                                                    : static_cast<const uint16_t*>(pixels)[i - 3]) : 0;
    out[i] = static_cast<uint16_t>((v - left) & (bits == 8 ? 0xFF : 0xFFFF));
  }
  return out;
}

// ---- TIFF structures: one IFD of tagged fields, as a TIFF file and an EXIF block hold them ----

enum TiffType : uint16_t { kAscii = 2, kShort = 3, kLong = 4, kRational = 5, kUndefined = 7 };

struct Field {
  uint16_t tag, type;
  std::vector<uint32_t> values;   // SHORT, LONG; RATIONAL as numerator, denominator pairs
  std::string text;               // ASCII (without its NUL), UNDEFINED
};

void put16(std::string& out, uint32_t v, bool big) {
  const char b[2] = {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
  out += big ? b[0] : b[1];
  out += big ? b[1] : b[0];
}
void put32(std::string& out, uint32_t v, bool big) {
  put16(out, big ? v >> 16 : v & 0xFFFF, big);
  put16(out, big ? v & 0xFFFF : v >> 16, big);
}

// The field's count and value bytes.
std::pair<uint32_t, std::string> field_value(const Field& f, bool big) {
  std::string bytes;
  if (f.type == kAscii) return {static_cast<uint32_t>(f.text.size() + 1), f.text + '\0'};
  if (f.type == kUndefined) return {static_cast<uint32_t>(f.text.size()), f.text};
  for (uint32_t v : f.values) f.type == kShort ? put16(bytes, v, big) : put32(bytes, v, big);
  return {static_cast<uint32_t>(f.type == kRational ? f.values.size() / 2 : f.values.size()), bytes};
}

// One IFD at file offset `at`: its entries in tag order, no next IFD, then the values longer than
// four bytes, each at an even offset (Pillow's layout).
std::string ifd_bytes(std::vector<Field> fields, uint32_t at, bool big) {
  std::sort(fields.begin(), fields.end(), [](const Field& a, const Field& b) { return a.tag < b.tag; });
  const uint32_t data_at = at + 2 + 12 * static_cast<uint32_t>(fields.size()) + 4;
  std::string head, data;
  put16(head, static_cast<uint32_t>(fields.size()), big);
  for (const Field& f : fields) {
    const auto [count, bytes] = field_value(f, big);
    put16(head, f.tag, big);
    put16(head, f.type, big);
    put32(head, count, big);
    if (bytes.size() <= 4) {
      head += bytes + std::string(4 - bytes.size(), '\0');   // left-justified in the value field
    } else {
      put32(head, data_at + static_cast<uint32_t>(data.size()), big);
      data += bytes + std::string(bytes.size() % 2, '\0');
    }
  }
  put32(head, 0, big);
  return head + data;
}

// kernels/postprocess.py: _exif_values(), the text fields' rule: 7-bit ASCII (each other
// character '?'), no NUL, at most 256 characters. The text is UTF-8 (the JSON parser checked it).
std::string exif_text(const std::string& utf8) {
  std::string out;
  for (unsigned char c : utf8) {
    if (out.size() == 256) break;
    if (c >= 0x80 && c < 0xC0) continue;   // a continuation byte: its character is already a '?'
    if (c != 0) out += c < 0x80 ? static_cast<char>(c) : '?';
  }
  return out;
}

// Python's Fraction(n, d).limit_denominator(max_den), n / d > 0 in lowest terms: the closest
// fraction whose denominator is at most max_den. Every product below stays within 2^110 for the
// values it is called with (n < 2^53 and d <= 2^77, or n <= 2^20 and d < 2^41).
std::pair<uint64_t, uint64_t> limit_fraction(__int128 n, __int128 d, uint64_t max_den) {
  if (d <= static_cast<__int128>(max_den)) return {static_cast<uint64_t>(n), static_cast<uint64_t>(d)};
  __int128 p0 = 0, q0 = 1, p1 = 1, q1 = 0, num = n, den = d;
  for (;;) {
    const __int128 a = num / den, q2 = q0 + a * q1;
    if (q2 > static_cast<__int128>(max_den)) break;
    const __int128 p2 = p0 + a * p1;
    p0 = p1;
    q0 = q1;
    p1 = p2;
    q1 = q2;
    const __int128 rest = num - a * den;
    num = den;
    den = rest;
  }
  const __int128 k = (static_cast<__int128>(max_den) - q0) / q1;
  const __int128 bp = p0 + k * p1, bq = q0 + k * q1;   // bound1 = bp / bq; bound2 = p1 / q1
  auto gap = [&](__int128 p, __int128 q) { const __int128 g = p * d - n * q; return g < 0 ? -g : g; };
  // |bound2 - n/d| <= |bound1 - n/d|, over the common denominator d * q1 * bq
  if (gap(p1, q1) * bq <= gap(bp, bq) * q1) return {static_cast<uint64_t>(p1), static_cast<uint64_t>(q1)};
  return {static_cast<uint64_t>(bp), static_cast<uint64_t>(bq)};
}

// kernels/postprocess.py's ExposureTime, for a finite x in (0, 1e6]: Fraction(x).limit_denominator(10^6)
// from x's exact binary value, then as Pillow writes a RATIONAL (TiffImagePlugin._limit_rational:
// a value above 1 inverted, limited to 32-bit terms, inverted back). {0, 1}: nearer 0 than 10^-6.
std::pair<uint32_t, uint32_t> exposure_rational(double x) {
  if (x < 1e-7) return {0, 1};   // nearer 0 than 1/10^6
  int exponent = 0;
  const double mantissa = std::frexp(x, &exponent);
  __int128 n = static_cast<__int128>(std::ldexp(mantissa, 53));   // x = n * 2^(exponent - 53)
  exponent -= 53;
  while (exponent < 0 && n % 2 == 0) {
    n /= 2;
    ++exponent;
  }
  std::pair<uint64_t, uint64_t> f = exponent >= 0 ? std::make_pair(static_cast<uint64_t>(n << exponent), uint64_t{1})
                                                  : limit_fraction(n, static_cast<__int128>(1) << -exponent, 1000000);
  if (f.first > f.second) {   // Fraction(d, n) is in lowest terms as n / d is
    const auto inverse = limit_fraction(f.second, f.first, 0xFFFFFFFFu);
    f = {inverse.second, inverse.first};
  }
  return {static_cast<uint32_t>(f.first), static_cast<uint32_t>(f.second)};
}

bool positive(double v) { return std::isfinite(v) && v > 0; }

// kernels/postprocess.py: _exif_values(): IFD0's tags and the EXIF IFD's (_exif_ifd_tags()).
std::pair<std::vector<Field>, std::vector<Field>> exif_fields(const ExifFacts& facts) {
  std::vector<Field> ifd0 = {{274, kShort, {1}, ""}}, sub;   // Orientation: top-left, the pixels are upright
  const std::string make = exif_text(facts.make), model = exif_text(facts.model), when = exif_text(facts.datetime);
  if (!make.empty()) ifd0.push_back({271, kAscii, {}, make});
  if (!model.empty()) ifd0.push_back({272, kAscii, {}, model});
  if (!when.empty()) {
    ifd0.push_back({306, kAscii, {}, when});                 // DateTime
    sub.push_back({36867, kAscii, {}, when});                // DateTimeOriginal
  }
  if (positive(facts.exposure_time)) {
    const auto [num, den] = exposure_rational(std::min(facts.exposure_time, 1e6));
    if (num) sub.push_back({33434, kRational, {num, den}, ""});
  }
  if (positive(facts.iso)) {   // Python's max(1, min(int(round(iso)), 65535)): round half to even
    const double iso = std::nearbyint(std::min(facts.iso, 65536.0));
    sub.push_back({34855, kShort, {static_cast<uint32_t>(std::max(1.0, std::min(iso, 65535.0)))}, ""});
  }
  return {ifd0, sub};
}

// Baseline little-endian RGB TIFF, one strip, Adobe deflate (zlib): 8/16-bit with predictor 2,
// float32 (SampleFormat 3) with none, as tifffile writes the host's; the ICC profile (tag 34675)
// and the EXIF facts (TIFF/EP tags in IFD0, as the host's).
std::string encode_tiff(const void* pixels, int width, int height, int bits, const ImageTags& tags) {
  std::string samples;
  const size_t n = static_cast<size_t>(width) * height * 3;
  if (bits == 32) {
    const auto* f = static_cast<const float*>(pixels);
    samples.reserve(4 * n);
    for (size_t i = 0; i < n; ++i) {
      uint32_t v;
      std::memcpy(&v, &f[i], sizeof v);
      put32(samples, v, false);
    }
  } else {
    const std::vector<uint16_t> diff = horizontal_differences(pixels, width, height, bits);
    if (bits == 8) {
      samples.resize(diff.size());
      for (size_t i = 0; i < diff.size(); ++i) samples[i] = static_cast<char>(diff[i]);
    } else {
      samples = samples_bytes(diff.data(), width, height, 16, false);
    }
  }
  const std::string strip = deflate_bytes(samples);
  const uint32_t b = static_cast<uint32_t>(bits);
  std::vector<Field> fields = {
      {256, kLong, {static_cast<uint32_t>(width)}, ""}, {257, kLong, {static_cast<uint32_t>(height)}, ""},
      {258, kShort, {b, b, b}, ""},           // BitsPerSample
      {259, kShort, {8}, ""},                 // Compression: Adobe deflate
      {262, kShort, {2}, ""},                 // Photometric: RGB
      {273, kLong, {0}, ""},                  // StripOffsets: set below
      {277, kShort, {3}, ""}, {278, kLong, {static_cast<uint32_t>(height)}, ""},
      {279, kLong, {static_cast<uint32_t>(strip.size())}, ""}, {284, kShort, {1}, ""},   // one strip, chunky
      {317, kShort, {bits == 32 ? 1u : 2u}, ""},                                          // Predictor
      {339, kShort, bits == 32 ? std::vector<uint32_t>{3, 3, 3} : std::vector<uint32_t>{1, 1, 1}, ""}};
  if (!tags.icc.empty()) fields.push_back({34675, kUndefined, {}, tags.icc});
  auto [ifd0, sub] = exif_fields(tags.exif);
  fields.insert(fields.end(), ifd0.begin(), ifd0.end());
  fields.insert(fields.end(), sub.begin(), sub.end());
  std::string out = "II*";
  out += '\0';
  put32(out, 8, false);
  const size_t header = out.size() + ifd_bytes(fields, 8, false).size();
  fields[5].values[0] = static_cast<uint32_t>(header);   // the strip after the IFD and its values
  return out + ifd_bytes(fields, 8, false) + strip;
}

std::string encode_ppm16(const void* pixels, int width, int height) {
  return "P6\n" + std::to_string(width) + " " + std::to_string(height) + "\n65535\n" +
         samples_bytes(pixels, width, height, 16, true);
}

}  // namespace

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  return h.hex();
}

std::string sha256_file(const std::string& path) { return sha256_hex(read_file(path)); }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read " + path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

namespace {

// The temporary files being written, for the signal handler: fixed buffers, since a handler
// may only call async-signal-safe functions (unlink) and must not allocate.
constexpr int kMaxTemps = 8;
char g_temps[kMaxTemps][4096];
volatile sig_atomic_t g_temp_count = 0;

void remove_temps_and_reraise(int sig) {
  for (int i = 0; i < g_temp_count; ++i) unlink(g_temps[i]);
  signal(sig, SIG_DFL);
  raise(sig);
}

std::string dirname_or_dot(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string basename_str(const std::string& path) {
  const auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

mode_t current_umask() {
  const mode_t mask = umask(0);
  umask(mask);
  return mask;
}

}  // namespace

void remove_temporaries_on_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, remove_temps_and_reraise);
}

void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files) {
  if (files.size() > static_cast<size_t>(kMaxTemps)) throw Error("too many output files");
  std::vector<std::string> temps;
  auto discard = [&] {
    for (const auto& t : temps) unlink(t.c_str());
    g_temp_count = 0;
  };
  const mode_t mode = 0666 & ~current_umask();
  for (const auto& [path, bytes] : files) {
    // mkstemp: a fresh name opened O_CREAT|O_EXCL beside the target, so a file or symlink
    // planted at a predictable name is never opened, let alone followed.
    std::string name = dirname_or_dot(path) + "/." + basename_str(path) + ".XXXXXX";
    if (name.size() >= sizeof g_temps[0]) {
      discard();
      throw Error("output path too long: " + path);
    }
    std::vector<char> buf(name.begin(), name.end());
    buf.push_back('\0');
    const int fd = mkstemp(buf.data());
    if (fd < 0) {
      discard();
      throw Error("cannot write " + path + ": " + std::strerror(errno));
    }
    temps.emplace_back(buf.data());
    std::memcpy(g_temps[g_temp_count], buf.data(), buf.size());
    g_temp_count = g_temp_count + 1;
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
      if (n <= 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    const bool ok = done == bytes.size() && fchmod(fd, mode) == 0;
    if (close(fd) != 0 || !ok) {
      discard();
      throw Error("cannot write " + path + ": " + std::strerror(errno ? errno : EIO));
    }
  }
  // Every file is written: only now does any of them replace what was there.
  for (size_t i = 0; i < files.size(); ++i)
    if (std::rename(temps[i].c_str(), files[i].first.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      discard();
      throw Error("cannot rename " + temps[i] + " onto " + files[i].first + ": " + why);
    }
  g_temp_count = 0;
}

void write_file_atomic(const std::string& path, const std::string& bytes) { write_files_atomic({{path, bytes}}); }


static std::string lower_extension(const std::string& path) {
  const auto dot = path.find_last_of('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

OutputSpec output_spec(const std::string& path, int bits) {
  const std::string ext = lower_extension(path);
  OutputSpec spec;
  if (ext == ".png") spec = {ImageFormat::Png, 8};
  else if (ext == ".tif" || ext == ".tiff") spec = {ImageFormat::Tiff, 16};
  else if (ext == ".jpg" || ext == ".jpeg") spec = {ImageFormat::Jpeg, 8};
  else if (ext == ".ppm") spec = {ImageFormat::Ppm, 16};
  else throw Error("unsupported output format for " + path + "; use .png (8 or 16-bit), .tif (16, 8 or 32-bit float), "
                   ".jpg (8-bit) or .ppm (16-bit)");
  if (bits != 0) {
    if (bits != 8 && bits != 16 && bits != 32) throw Error("--bits must be 8, 16 or 32 (float), got " + std::to_string(bits));
    if (spec.format == ImageFormat::Ppm && bits != 16) throw Error(".ppm output is 16-bit; use .png for 8 bits");
    if (spec.format == ImageFormat::Jpeg && bits != 8) throw Error(".jpg output is 8-bit; use .tif or .png for " +
                                                                   std::to_string(bits) + " bits");
    if (bits == 32 && spec.format != ImageFormat::Tiff) throw Error("float (--bits 32) output is TIFF only; use .tif");
    spec.bits = bits;
  }
  return spec;
}

std::string exif_block(const ExifFacts& facts) {
  auto [ifd0, sub] = exif_fields(facts);
  const std::string header = std::string("MM\0*", 4) + std::string("\0\0\0\x08", 4);
  if (sub.empty()) return header + ifd_bytes(ifd0, 8, true);
  ifd0.push_back({34665, kLong, {0}, ""});   // the EXIF IFD's pointer: it follows IFD0 and its values
  ifd0.back().values[0] = static_cast<uint32_t>(8 + ifd_bytes(ifd0, 8, true).size());
  return header + ifd_bytes(ifd0, 8, true) + ifd_bytes(sub, ifd0.back().values[0], true);
}

std::string encode_image(const OutputSpec& spec, const void* pixels, int width, int height, const ImageTags& tags) {
  ImageTags tagged = tags;   // sRGB in TIFF and JPEG, which have no sRGB tag of their own: the host's profile
  if (tagged.icc.empty() && spec.format != ImageFormat::Png)
    tagged.icc.assign(reinterpret_cast<const char*>(kSrgbIcc), sizeof kSrgbIcc);
  switch (spec.format) {
    case ImageFormat::Png: return encode_png(pixels, width, height, spec.bits, tags.icc, tags.icc_name,
                                             exif_block(tags.exif));
    case ImageFormat::Tiff: return encode_tiff(pixels, width, height, spec.bits, tagged);
    case ImageFormat::Ppm: return encode_ppm16(pixels, width, height);
    case ImageFormat::Jpeg:
      return encode_jpeg(static_cast<const uint8_t*>(pixels), width, height,
                         tags.quality ? tags.quality : kDefaultJpegQuality,
                         std::string("Exif\0\0", 6) + exif_block(tags.exif), tagged.icc);
  }
  throw Error("unknown image format");
}

}  // namespace edge4k
