#include "image_io.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include <zlib.h>

#include "common.h"

namespace edge4k {
namespace {

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
// chunk (rendering intent 0, perceptual), which says the same of sRGB in one byte.
std::string encode_png(const void* pixels, int width, int height, int bits, const std::string& icc,
                       const std::string& icc_name) {
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
  chunk(png, "IDAT", deflate_bytes(filter_rows(reinterpret_cast<const uint8_t*>(samples.data()), row, height,
                                               3 * (bits / 8))));
  chunk(png, "IEND", "");
  return png;
}

void put16le(std::string& out, uint16_t v) {
  out += static_cast<char>(v & 0xFF);
  out += static_cast<char>(v >> 8);
}
void put32le(std::string& out, uint32_t v) {
  for (int s = 0; s < 32; s += 8) out += static_cast<char>((v >> s) & 0xFF);
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

// Baseline little-endian RGB TIFF, one strip, Adobe deflate (zlib) with predictor 2; an ICC
// profile in tag 34675 (InterColorProfile) after the strip.
std::string encode_tiff(const void* pixels, int width, int height, int bits, const std::string& icc) {
  const std::vector<uint16_t> diff = horizontal_differences(pixels, width, height, bits);
  std::string samples;
  if (bits == 8) {
    samples.resize(diff.size());
    for (size_t i = 0; i < diff.size(); ++i) samples[i] = static_cast<char>(diff[i]);
  } else {
    samples = samples_bytes(diff.data(), width, height, 16, false);
  }
  const std::string strip = deflate_bytes(samples);
  struct Entry { uint16_t tag, type; uint32_t count, value; };
  const uint32_t ifd_at = 8, entries = icc.empty() ? 11 : 12, bits_at = ifd_at + 2 + entries * 12 + 4,
                 strip_at = bits_at + 6, icc_at = strip_at + static_cast<uint32_t>(strip.size() + strip.size() % 2);
  const Entry ifd[12] = {
      {256, 4, 1, static_cast<uint32_t>(width)}, {257, 4, 1, static_cast<uint32_t>(height)},
      {258, 3, 3, bits_at},                                      // BitsPerSample, three SHORTs stored below
      {259, 3, 1, 8},                                            // Compression: Adobe deflate
      {262, 3, 1, 2},                                            // Photometric: RGB
      {273, 4, 1, strip_at}, {277, 3, 1, 3}, {278, 4, 1, static_cast<uint32_t>(height)},
      {279, 4, 1, static_cast<uint32_t>(strip.size())}, {284, 3, 1, 1},   // one strip, chunky
      {317, 3, 1, 2},                                                        // Predictor: horizontal
      {34675, 7, static_cast<uint32_t>(icc.size()), icc_at}};                // ICC profile (UNDEFINED bytes)
  std::string out = "II*";
  out += '\0';
  put32le(out, ifd_at);
  put16le(out, entries);
  for (uint32_t k = 0; k < entries; ++k) {
    const Entry& e = ifd[k];
    put16le(out, e.tag);
    put16le(out, e.type);
    put32le(out, e.count);
    if (e.type == 3 && e.count == 1) {   // a SHORT sits left-justified in the value field
      put16le(out, static_cast<uint16_t>(e.value));
      put16le(out, 0);
    } else {
      put32le(out, e.value);
    }
  }
  put32le(out, 0);   // no next IFD
  for (int i = 0; i < 3; ++i) put16le(out, static_cast<uint16_t>(bits));
  if (icc.empty()) return out + strip;
  return out + strip + std::string(strip.size() % 2, '\0') + icc;   // offsets on a word boundary
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
  else if (ext == ".ppm") spec = {ImageFormat::Ppm, 16};
  else throw Error("unsupported output format for " + path + "; use .png (8 or 16-bit), .tif (16 or 8-bit) or .ppm (16-bit)");
  if (bits != 0) {
    if (bits != 8 && bits != 16) throw Error("--bits must be 8 or 16, got " + std::to_string(bits));
    if (spec.format == ImageFormat::Ppm && bits != 16) throw Error(".ppm output is 16-bit; use .png for 8 bits");
    spec.bits = bits;
  }
  return spec;
}

std::string encode_image(const OutputSpec& spec, const void* pixels, int width, int height, const std::string& icc,
                         const std::string& icc_name) {
  switch (spec.format) {
    case ImageFormat::Png: return encode_png(pixels, width, height, spec.bits, icc, icc_name);
    case ImageFormat::Tiff: return encode_tiff(pixels, width, height, spec.bits, icc);
    case ImageFormat::Ppm: return encode_ppm16(pixels, width, height);
  }
  throw Error("unknown image format");
}

}  // namespace edge4k
