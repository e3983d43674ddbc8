// Tiling in C++: reflection padding, tile plans, blend weights and blending. The
// C++ twins of kernels/tiling.py.
#pragma once

#include <utility>
#include <vector>

#include "common.h"

namespace edge4k {

// Reflection padding (numpy "reflect") of (channels, height, width) at the bottom
// and right to (channels, padded_height, padded_width).
std::vector<float> pad_reflect(const float* in, int channels, int height, int width,
                               int padded_height, int padded_width);

// The same padding in place: data is (channels, padded_height, padded_width) whose top-left
// height x width of each plane is filled; the rest is filled from it.
void reflect_in_place(float* data, int channels, int height, int width, int padded_height, int padded_width);

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

// The tiles over a height x width RAW frame as the frontend pads it (frontend.h: PHASE_PAD more
// pixels each way): what the runner plans for a frame.
TilePlan plan_frame(int height, int width, int compression, int tile, int overlap, bool native);

// (tile_height, tile_width) weight of the tile at (y, x), row-major.
std::vector<float> blend_weight(const TilePlan& plan, int y, int x);

// A window (top, left, height, width) of the padded frame.
struct Window {
  int top = 0, left = 0, height = 0, width = 0;
};

// Blends (channels, tile_h, tile_w) tiles straight into a window of the frame, rows in parallel
// (common.h: parallel_for). The plan's tiles form a grid and each tile's weight is a row ramp
// times a column ramp (blend_weight), so the weights' sum at a pixel is the product of the row
// ramps' sum and the column ramps' sum: dividing each ramp by its sum up front makes every
// pixel's weights add up to one, with no weight plane and no division pass over the frame.
// (kernels/tiling.py's Blender divides by the accumulated weights; the two agree to float
// rounding, tests/test_native_kernels.py.)
class Blender {
 public:
  // window: default the frame (0, 0, plan.height, plan.width). out: caller-owned, zeroed
  // (channels, window.height, window.width) floats to blend into; null: the Blender's own.
  Blender(const TilePlan& plan, int channels = 3, Window window = {}, float* out = nullptr);
  // A tile at one of the plan's origins; throws Error for any other place.
  void add(const float* tile, int y, int x);
  std::vector<float> result() const { return {out_, out_ + size_}; }

 private:
  TilePlan plan_;
  int channels_;
  Window window_;
  size_t size_;
  std::vector<float> own_;
  float* out_;
  std::vector<std::pair<int, std::vector<float>>> rows_, cols_;   // origin -> its normalised ramp
};

}  // namespace edge4k
