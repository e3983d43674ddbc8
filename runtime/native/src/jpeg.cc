#include "jpeg.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <vector>

#include "common.h"

namespace edge4k {
namespace {

// The natural (row-major) index of the k-th coefficient in zigzag order (T.81 figure A.6).
constexpr uint8_t kZigzag[64] = {0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,
                                 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28,
                                 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
                                 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

// T.81 Annex K tables K.1 and K.2, row-major.
constexpr uint8_t kLumaTable[64] = {16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
                                    14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
                                    18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
                                    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
constexpr uint8_t kChromaTable[64] = {17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
                                      24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
                                      99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
                                      99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99};

using Block = std::array<float, 64>;     // samples or coefficients, row-major
using Coded = std::array<int16_t, 64>;   // quantised coefficients, zigzag order

// The IJG scaling (libjpeg's jpeg_quality_scaling), limited to baseline's 8-bit entries.
std::array<int, 64> scaled_table(const uint8_t* base, int quality) {
  const int scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  std::array<int, 64> table{};
  for (int i = 0; i < 64; ++i) table[i] = std::clamp((base[i] * scale + 50) / 100, 1, 255);
  return table;
}

// The 8-point DCT-II basis, orthonormal: with it the 2-D transform is exactly T.81's FDCT.
struct Basis {
  float c[8][8];
  Basis() {
    for (int u = 0; u < 8; ++u)
      for (int x = 0; x < 8; ++x)
        c[u][x] = static_cast<float>((u == 0 ? std::sqrt(0.125) : 0.5) * std::cos((2 * x + 1) * u * M_PI / 16));
  }
};

// divisors: 1 / the quantisation table, row-major.
Coded quantise(const Block& samples, const std::array<float, 64>& divisors) {
  static const Basis basis;
  Block rows{}, freq{};
  for (int y = 0; y < 8; ++y)
    for (int u = 0; u < 8; ++u) {
      float s = 0;
      for (int x = 0; x < 8; ++x) s += basis.c[u][x] * samples[y * 8 + x];
      rows[y * 8 + u] = s;
    }
  for (int v = 0; v < 8; ++v)
    for (int u = 0; u < 8; ++u) {
      float s = 0;
      for (int y = 0; y < 8; ++y) s += basis.c[v][y] * rows[y * 8 + u];
      freq[v * 8 + u] = s;
    }
  Coded coded{};
  for (int k = 0; k < 64; ++k) {
    const float q = freq[kZigzag[k]] * divisors[kZigzag[k]];
    coded[k] = static_cast<int16_t>(q + (q >= 0 ? 0.5f : -0.5f));   // to nearest, halves away from zero
  }
  return coded;
}

// The level-shifted Y, Cb and Cr samples of one MCU (16x16 pixels for 4:2:0, 8x8 for 4:4:4) whose
// top-left pixel is (x0, y0); pixels past the image repeat its last row and column, as libjpeg
// pads. Blocks in scan order: the luma blocks row by row, then Cb, then Cr. Returns their count.
int mcu_blocks(const uint8_t* rgb, int width, int height, int x0, int y0, bool subsample, Block* blocks) {
  const int size = subsample ? 16 : 8;
  float y_px[16][16], cb_px[16][16], cr_px[16][16];
  for (int dy = 0; dy < size; ++dy) {
    const uint8_t* row = rgb + static_cast<size_t>(std::min(y0 + dy, height - 1)) * width * 3;
    for (int dx = 0; dx < size; ++dx) {
      const uint8_t* p = row + static_cast<size_t>(std::min(x0 + dx, width - 1)) * 3;
      const int r = p[0], g = p[1], b = p[2];
      // JFIF's RGB to YCbCr in 16-bit fixed point, rounded to the 8-bit samples a decoder sees.
      y_px[dy][dx] = static_cast<float>(((19595 * r + 38470 * g + 7471 * b + 32768) >> 16) - 128);
      cb_px[dy][dx] = static_cast<float>(((-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 32767) >> 16) - 128);
      cr_px[dy][dx] = static_cast<float>(((32768 * r - 27439 * g - 5329 * b + (128 << 16) + 32767) >> 16) - 128);
    }
  }
  int n = 0;
  for (int by = 0; by < size; by += 8)
    for (int bx = 0; bx < size; bx += 8, ++n)
      for (int i = 0; i < 64; ++i) blocks[n][i] = y_px[by + i / 8][bx + i % 8];
  for (auto* plane : {cb_px, cr_px}) {
    for (int i = 0; i < 64; ++i) {
      const int r = i / 8, c = i % 8;
      blocks[n][i] = subsample ? (plane[2 * r][2 * c] + plane[2 * r][2 * c + 1] + plane[2 * r + 1][2 * c] +
                                  plane[2 * r + 1][2 * c + 1]) / 4
                               : plane[r][c];
    }
    ++n;
  }
  return n;
}

int magnitude_bits(int v) {
  int n = 0;
  for (unsigned a = static_cast<unsigned>(std::abs(v)); a; a >>= 1) ++n;
  return n;
}

// The symbols of one block (T.81 F.1.2): emit(is_ac, symbol, extra_bits, extra_length).
template <typename Emit>
void code_block(const Coded& z, int& previous_dc, Emit&& emit) {
  const int diff = z[0] - previous_dc;
  previous_dc = z[0];
  int s = magnitude_bits(diff);
  emit(false, s, diff >= 0 ? diff : diff + (1 << s) - 1, s);
  int run = 0;
  for (int k = 1; k < 64; ++k) {
    if (z[k] == 0) { ++run; continue; }
    for (; run > 15; run -= 16) emit(true, 0xF0, 0, 0);
    s = magnitude_bits(z[k]);
    emit(true, (run << 4) | s, z[k] >= 0 ? z[k] : z[k] + (1 << s) - 1, s);
    run = 0;
  }
  if (run > 0) emit(true, 0x00, 0, 0);
}

struct HuffmanTable {
  uint8_t counts[17] = {};           // counts[n]: codes of n bits
  std::vector<uint8_t> symbols;      // by code length
  uint16_t code[256] = {};
  uint8_t length[256] = {};
};

// The optimal length-limited table for these symbol counts, as libjpeg's jpeg_gen_optimal_table
// (T.81 K.2): Huffman's code lengths, lengths over 16 folded back, and one code point reserved
// so that no code is all ones.
HuffmanTable optimal_table(const std::array<long, 256>& frequency) {
  long freq[257];
  std::copy(frequency.begin(), frequency.end(), freq);
  freq[256] = 1;   // the reserved code point
  int codesize[257] = {}, others[257];
  std::fill(std::begin(others), std::end(others), -1);
  for (;;) {
    int c1 = -1, c2 = -1;
    long v1 = LONG_MAX, v2 = LONG_MAX;
    for (int i = 0; i <= 256; ++i)
      if (freq[i] && freq[i] <= v1) { v1 = freq[i]; c1 = i; }
    for (int i = 0; i <= 256; ++i)
      if (freq[i] && freq[i] <= v2 && i != c1) { v2 = freq[i]; c2 = i; }
    if (c2 < 0) break;
    freq[c1] += freq[c2];
    freq[c2] = 0;
    for (++codesize[c1]; others[c1] >= 0; ++codesize[c1]) c1 = others[c1];
    others[c1] = c2;
    for (++codesize[c2]; others[c2] >= 0; ++codesize[c2]) c2 = others[c2];
  }
  int bits[33] = {};
  for (int i = 0; i <= 256; ++i)
    if (codesize[i]) bits[std::min(codesize[i], 32)]++;
  for (int i = 32; i > 16; --i)
    while (bits[i] > 0) {
      int j = i - 2;
      while (bits[j] == 0) --j;
      bits[i] -= 2;
      bits[i - 1]++;
      bits[j + 1] += 2;
      bits[j]--;
    }
  int longest = 16;
  while (bits[longest] == 0) --longest;
  bits[longest]--;   // drop the reserved code point
  HuffmanTable table;
  for (int n = 1; n <= 16; ++n) table.counts[n] = static_cast<uint8_t>(bits[n]);
  for (int n = 1; n <= 32; ++n)
    for (int s = 0; s < 256; ++s)
      if (codesize[s] == n) table.symbols.push_back(static_cast<uint8_t>(s));
  // Canonical codes (T.81 C.2): consecutive within a length, doubled at each longer length.
  uint16_t code = 0;
  size_t k = 0;
  for (int n = 1; n <= 16; ++n, code <<= 1)
    for (int i = 0; i < bits[n]; ++i, ++k, ++code) {
      table.code[table.symbols[k]] = code;
      table.length[table.symbols[k]] = static_cast<uint8_t>(n);
    }
  return table;
}

class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  void put(uint32_t bits, int length) {
    acc_ = (acc_ << length) | (bits & ((1u << length) - 1));
    pending_ += length;
    while (pending_ >= 8) {
      const char byte = static_cast<char>((acc_ >> (pending_ - 8)) & 0xFF);
      out_ += byte;
      if (byte == '\xFF') out_ += '\0';   // byte stuffing: 0xFF in entropy-coded data is followed by 0
      pending_ -= 8;
    }
    acc_ &= (1u << pending_) - 1;
  }
  void pad() {
    if (pending_) put((1u << (8 - pending_)) - 1, 8 - pending_);   // fill the last byte with ones
  }

 private:
  std::string& out_;
  uint32_t acc_ = 0;
  int pending_ = 0;
};

void put16(std::string& out, size_t v) {
  out += static_cast<char>((v >> 8) & 0xFF);
  out += static_cast<char>(v & 0xFF);
}

void segment(std::string& out, uint8_t marker, const std::string& payload) {
  if (payload.size() > 65533) throw Error("a JPEG marker segment cannot hold " + std::to_string(payload.size()) + " bytes");
  out += '\xFF';
  out += static_cast<char>(marker);
  put16(out, payload.size() + 2);
  out += payload;
}

}  // namespace

std::string encode_jpeg(const uint8_t* rgb, int width, int height, int quality, const std::string& app1,
                        const std::string& icc) {
  if (width < 1 || height < 1 || width > 65535 || height > 65535)
    throw Error("JPEG holds 1 to 65535 pixels a side, not " + std::to_string(width) + "x" + std::to_string(height));
  if (quality < 1 || quality > 100) throw Error("JPEG quality must be 1-100, got " + std::to_string(quality));
  const bool subsample = quality < 90;
  const int mcu = subsample ? 16 : 8, luma_blocks = subsample ? 4 : 1;
  const std::array<int, 64> tables[2] = {scaled_table(kLumaTable, quality), scaled_table(kChromaTable, quality)};
  std::array<float, 64> divisors[2];
  for (int t = 0; t < 2; ++t)
    for (int i = 0; i < 64; ++i) divisors[t][i] = 1.0f / static_cast<float>(tables[t][i]);

  // The quantised blocks in scan order, kept (2 bytes a sample: 50 MB for a 4K frame at 4:4:4)
  // because the Huffman tables are fitted to them before anything is written.
  const int per_mcu = luma_blocks + 2;
  std::vector<Coded> coded;
  coded.reserve(static_cast<size_t>((width + mcu - 1) / mcu) * ((height + mcu - 1) / mcu) * per_mcu);
  Block blocks[6];
  for (int y0 = 0; y0 < height; y0 += mcu)
    for (int x0 = 0; x0 < width; x0 += mcu)
      for (int b = 0, n = mcu_blocks(rgb, width, height, x0, y0, subsample, blocks); b < n; ++b)
        coded.push_back(quantise(blocks[b], divisors[b < luma_blocks ? 0 : 1]));

  // Two passes over them: count the symbols, then write them with tables fitted to the counts.
  // Component c of the scan uses table set 0 (luma) or 1 (chroma).
  auto each_block = [&](auto&& visit) {
    int previous_dc[3] = {0, 0, 0};
    for (size_t i = 0; i < coded.size(); ++i) {
      const int b = static_cast<int>(i % per_mcu), component = b < luma_blocks ? 0 : b - luma_blocks + 1;
      const int set = component == 0 ? 0 : 1;
      code_block(coded[i], previous_dc[component],
                 [&](bool ac, int symbol, int bits, int length) { visit(set, ac, symbol, bits, length); });
    }
  };
  std::array<long, 256> frequency[2][2] = {};   // [set][dc, ac]
  each_block([&](int set, bool ac, int symbol, int, int) { frequency[set][ac][symbol]++; });
  const HuffmanTable huffman[2][2] = {{optimal_table(frequency[0][0]), optimal_table(frequency[0][1])},
                                      {optimal_table(frequency[1][0]), optimal_table(frequency[1][1])}};

  std::string out = "\xFF\xD8";
  segment(out, 0xE0, std::string("JFIF\0\x01\x01\0\0\x01\0\x01\0\0", 14));   // v1.01, aspect 1:1, no thumbnail
  if (!app1.empty()) segment(out, 0xE1, app1);
  if (!icc.empty()) {
    constexpr size_t kChunk = 65533 - 14;   // the segment's payload less "ICC_PROFILE\0", index, count
    const size_t chunks = (icc.size() + kChunk - 1) / kChunk;
    if (chunks > 255) throw Error("an ICC profile of " + std::to_string(icc.size()) + " bytes does not fit in JPEG APP2");
    for (size_t i = 0; i < chunks; ++i)
      segment(out, 0xE2, std::string("ICC_PROFILE\0", 12) + static_cast<char>(i + 1) + static_cast<char>(chunks) +
                             icc.substr(i * kChunk, kChunk));
  }
  std::string dqt;
  for (int t = 0; t < 2; ++t) {
    dqt += static_cast<char>(t);   // 8-bit entries, table t
    for (int k = 0; k < 64; ++k) dqt += static_cast<char>(tables[t][kZigzag[k]]);
  }
  segment(out, 0xDB, dqt);
  std::string sof = {8};   // baseline, 8-bit samples
  put16(sof, static_cast<size_t>(height));
  put16(sof, static_cast<size_t>(width));
  sof += '\x03';
  for (int c = 0; c < 3; ++c) {
    sof += static_cast<char>(c + 1);
    sof += static_cast<char>(c == 0 && subsample ? 0x22 : 0x11);
    sof += static_cast<char>(c == 0 ? 0 : 1);
  }
  segment(out, 0xC0, sof);
  std::string dht;
  for (int set = 0; set < 2; ++set)
    for (int ac = 0; ac < 2; ++ac) {
      dht += static_cast<char>((ac << 4) | set);
      for (int n = 1; n <= 16; ++n) dht += static_cast<char>(huffman[set][ac].counts[n]);
      dht.append(huffman[set][ac].symbols.begin(), huffman[set][ac].symbols.end());
    }
  segment(out, 0xC4, dht);
  segment(out, 0xDA, std::string("\x03\x01\x00\x02\x11\x03\x11\x00\x3F\x00", 10));   // Y, Cb, Cr; spectra 0-63

  BitWriter writer(out);
  each_block([&](int set, bool ac, int symbol, int bits, int length) {
    const HuffmanTable& table = huffman[set][ac];
    writer.put(table.code[symbol], table.length[symbol]);
    if (length) writer.put(static_cast<uint32_t>(bits), length);
  });
  writer.pad();
  out += "\xFF\xD9";
  return out;
}

}  // namespace edge4k
