// Edge4K CPU kernels in C++: the native runner's raw_preprocess and postprocess.
//
// Each function is the C++ twin of one Python function and is tested against it
// for equality (tests/test_native_kernels.py):
//   pack, thumbnail          kernels/raw.py        pack(), thumbnail()
//   pad_reflect              runtime/tiling.py     pad_packed()
//   plan_tiles, blend_weight runtime/tiling.py     plan_tiles(), blend_weight()
//   Blender                  runtime/tiling.py     Blender
//   quantise                 kernels/postprocess.py quantise()
// Layouts are the Python ones: planar CHW float32 in, interleaved HWC out.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace edge4k {

// A problem with the input or the build, explained in one line (like Edge4KError).
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What the raw frontend needs from a RAW file; the host decodes the file with
// LibRaw and hands these over (kernels/raw.py: RawFrame).
struct BayerFrame {
  int width = 0, height = 0;
  std::string cfa;                 // pattern at the origin: RGGB, BGGR, GRBG or GBRG
  double black_level[4] = {};      // per packed channel [R, Gr, Gb, B]
  double white_level = 0;
  double wb_gains[3] = {1, 1, 1};  // R, G, B with G = 1
  double srgb_from_cam[9] = {};    // row-major 3x3
  std::vector<uint16_t> bayer;     // height * width, row-major
};

// Row/column offset inside the 2x2 cell of each packed channel [R, Gr, Gb, B].
std::vector<std::pair<int, int>> cfa_offsets(const std::string& cfa);

// Bayer -> packed (4, H/2, W/2) float32: black-subtracted, divided by the white
// level, clipped to [0, 1], white-balanced. Computed in double and rounded once,
// as numpy does, so the result is bit-identical.
std::vector<float> pack(const BayerFrame& frame);

// Area-averaged (channels, size, size) thumbnail (torch's adaptive_avg_pool2d).
std::vector<float> thumbnail(const float* packed, int channels, int height, int width, int size);

// WB gains (3) + camera->sRGB matrix (9): the model's camera conditioning.
std::vector<float> meta_vector(const BayerFrame& frame);

// Reflection padding (numpy "reflect") of (channels, height, width) at the bottom
// and right to (channels, padded_height, padded_width).
std::vector<float> pad_reflect(const float* in, int channels, int height, int width,
                               int padded_height, int padded_width);

struct TilePlan {
  int height = 0, width = 0;                  // output pixels, before padding
  int padded_height = 0, padded_width = 0;    // multiples of the compression
  int tile_height = 0, tile_width = 0;
  int overlap = 0;
  bool native = false;
  std::vector<std::pair<int, int>> origins;   // (y, x) of each tile
};

// Where the tiles go; throws Error for combinations that cannot work.
TilePlan plan_tiles(int height, int width, int compression, int tile, int overlap, bool native);

// (tile_height, tile_width) weight of the tile at (y, x), row-major.
std::vector<float> blend_weight(const TilePlan& plan, int y, int x);

// Accumulates weighted (channels, tile_h, tile_w) tiles into the padded frame.
class Blender {
 public:
  explicit Blender(const TilePlan& plan, int channels = 3);
  void add(const float* tile, int y, int x);
  // Normalised and cropped to (channels, height, width).
  std::vector<float> result() const;

 private:
  TilePlan plan_;
  int channels_;
  std::vector<float> acc_, weight_;
};

// (3, H, W) display RGB -> (H, W, 3) interleaved, clamped, scaled to 2^bits - 1 and
// rounded half to even; out holds H*W*3 uint8 (bits 8) or uint16 (bits 16).
void quantise(const float* rgb, int height, int width, int bits, void* out);

}  // namespace edge4k
