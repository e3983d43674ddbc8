// Output colour spaces in C++: the twins of kernels/colourspace.py (the finishing matrix into a
// space's primaries, its encoding curve) and of kernels/icc.py (the matrix/TRC ICC profile an image
// in that space embeds).
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace edge4k {

// kernels/colourspace.py: OUTPUT_SPACES, in its order; "srgb" is the default.
enum class OutputSpace { Srgb, DisplayP3, AdobeRgb, ProPhoto, Rec2020Linear };
OutputSpace parse_output_space(const std::string& name);   // throws Error naming the valid spaces
const char* output_space_name(OutputSpace space);
// The fewest bits per sample that do not band the space (8, or 16 for ProPhoto and linear).
int output_space_min_bits(OutputSpace space);

// target_from_cam(): white-balanced camera RGB -> the space's linear RGB (row-major 3x3), the space's
// matrix (Bradford-adapted from sRGB's D65) after srgb_from_cam.
void target_from_cam(OutputSpace space, const double* srgb_from_cam, double* out);

// encode(): finished sRGB-curve values (3 * n floats) -> the space's own curve, in place (nothing for
// sRGB and Display P3, which share the sRGB curve).
void encode_space(OutputSpace space, float* rgb, size_t count);

// The space's ICC profile as kernels/colourspace.py: icc_profile() writes it, byte for byte (a
// matrix/TRC ICC v2 profile); empty for sRGB, whose profile Python takes from LittleCMS.
std::string icc_profile(OutputSpace space);
// The ICC profile's description ("Display P3", ...), also the PNG iCCP chunk's profile name.
const char* output_space_description(OutputSpace space);

}  // namespace edge4k
