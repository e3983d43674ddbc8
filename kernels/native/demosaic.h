// The classical base a raw_skip build's decoder residual is added to, in fp32 outside the
// compiled (maybe integer) program: Malvar-He-Cutler demosaicing of the packed RGGB planes as
// one 3x3 conv, pixel-shuffled. The C++ twin of models/blocks.py mhc_demosaic_weight() and
// BayerDemosaic, built from the same 5x5 kernel plan.
#pragma once

#include <array>

#include "common.h"

namespace edge4k {

// (12, 4, 3, 3) conv weights, row-major: output channel c * 4 + k is colour c (R, G, B) at
// cell site k = a * 2 + b (a: row, b: column inside the 2x2 cell), input channel the packed plane.
const std::array<float, 432>& mhc_demosaic_weight();

// rgb (batch, 3, 2 height, 2 width) += pixel_shuffle(conv2d(packed, W, padding=1), 2), packed
// (batch, 4, height, width): each tile zero-padded at its own edge, as the eager network pads it.
void add_mhc_base(const float* packed, int batch, int height, int width, float* rgb);

}  // namespace edge4k
