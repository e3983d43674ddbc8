// Tiling in C++: reflection padding, tile plans, blend weights and blending. The
// C++ twins of runtime/tiling.py.
#pragma once

#include <utility>
#include <vector>

#include "common.h"

namespace edge4k {

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

// Accumulates weighted (channels, tile_h, tile_w) tiles into the padded frame; rows in
// parallel (common.h: parallel_for).
class Blender {
 public:
  explicit Blender(const TilePlan& plan, int channels = 3);
  void add(const float* tile, int y, int x);
  // The normalised (channels, height, width) window at (top, left) of the padded frame.
  std::vector<float> result(int top, int left, int height, int width) const;
  // Normalised and cropped to the frame: (channels, plan.height, plan.width).
  std::vector<float> result() const { return result(0, 0, plan_.height, plan_.width); }

 private:
  TilePlan plan_;
  int channels_;
  std::vector<float> acc_, weight_;
};

}  // namespace edge4k
