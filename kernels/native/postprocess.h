// postprocess in C++: the blended network output -> the pixels of the image file.
// The C++ twin of kernels/postprocess.py; the v2 contract (square, colour matrix,
// looks, phase-padding crop) is a change to this file and postprocess.cc only.
#pragma once

#include "frontend.h"

namespace edge4k {

// (3, H, W) display RGB -> (H, W, 3) interleaved, clamped, scaled to 2^bits - 1 and
// rounded half to even; out holds H*W*3 uint8 (bits 8) or uint16 (bits 16).
void quantise(const float* rgb, int height, int width, int bits, void* out);

// The whole postprocess of one frame after blending: today clamp and quantise.
void postprocess(const float* rgb, const BayerFrame& frame, int bits, void* out);

}  // namespace edge4k
