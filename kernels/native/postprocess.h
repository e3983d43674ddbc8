// postprocess in C++: the blended network output -> the pixels of the image file.
// The C++ twins of kernels/postprocess.py: finishing (the exact colour pipeline and
// the look), orientation, quantisation.
#pragma once

#include <string>
#include <vector>

#include "frontend.h"

namespace edge4k {

// kernels/postprocess.py: LOOKS. neutral: colorimetric sRGB; natural: exposure, sRGB
// curve, smoothstep tone curve (the default, as on the host).
enum class Look { Neutral, Natural };
Look parse_look(const std::string& name);   // throws Error naming the valid looks
const char* look_name(Look look);

// Companded camera RGB (3, H, W) -> display sRGB in [0, 1], in place: square, clip, the
// camera->sRGB matrix, clip, the look. float32 throughout, like the torch code.
void finish(float* rgb, int height, int width, const double* srgb_from_cam, double exposure, Look look);

// (3, H, W) -> (3, H', W') upright for an EXIF Orientation 1..8 (H' = W for 5..8).
std::vector<float> orient(const float* rgb, int height, int width, int orientation);

// (3, H, W) display RGB -> (H, W, 3) interleaved, clamped, scaled to 2^bits - 1 and
// rounded half to even; out holds H*W*3 uint8 (bits 8) or uint16 (bits 16).
void quantise(const float* rgb, int height, int width, int bits, void* out);

// Width and height of the finished image of a frame (swapped for orientations 5..8).
std::pair<int, int> output_size(const BayerFrame& frame);

// The whole postprocess of one frame after blending: image is the frame's (3, height, width)
// window of the network output (tiling.h: Blender with that window), finished in place; turn
// upright, quantise into out.
void postprocess(float* image, const BayerFrame& frame, double exposure, Look look, int bits, void* out);

}  // namespace edge4k
