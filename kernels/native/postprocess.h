// postprocess in C++: the blended network output -> the pixels of the image file.
// The C++ twins of kernels/postprocess.py: finishing (the exact colour pipeline and
// the look), orientation, quantisation.
#pragma once

#include <string>
#include <vector>

#include "colourspace.h"
#include "frontend.h"

namespace edge4k {

// kernels/postprocess.py: LOOKS. neutral: colorimetric sRGB; natural: exposure, sRGB
// curve, smoothstep tone curve (the default, as on the host).
enum class Look { Neutral, Natural };
Look parse_look(const std::string& name);   // throws Error naming the valid looks
const char* look_name(Look look);

// kernels/postprocess.py: HIGHLIGHT_MODES. clip: each channel clipped at white; reconstruct:
// clipped channels rebuilt from the unclipped ones, then compressed into [0, 1].
enum class Highlights { Clip, Reconstruct };
Highlights parse_highlights(const std::string& name);   // throws Error naming the valid modes
const char* highlights_name(Highlights mode);

// What a user chooses for finishing beyond the look (kernels/rawcolour.py: ColourOptions' exposure
// and highlights, kernels/colourspace.py's output space).
struct Finishing {
  double ev = 0;   // exposure compensation in stops, on top of either look
  Highlights highlights = Highlights::Clip;
  OutputSpace space = OutputSpace::Srgb;
};
// Throws Error for an ev outside -10..+10 (ColourOptions' range) or not finite.
void check_finishing(const Finishing& finishing);

// Companded camera RGB (3, H, W) -> display sRGB in [0, 1], in place: square, clip, the
// camera->sRGB matrix, clip, the look. float32 throughout, like the torch code.
// ev and highlights: kernels/postprocess.py finish()'s.
void finish(float* rgb, int height, int width, const double* srgb_from_cam, double exposure, Look look,
            double ev = 0, Highlights highlights = Highlights::Clip);

// kernels/postprocess.py: reconstruct_highlights() on linear white-balanced camera RGB (3, H, W), in place.
void reconstruct_highlights(float* lin, int height, int width);

// (3, H, W) -> (3, H', W') upright for an EXIF Orientation 1..8 (H' = W for 5..8).
std::vector<float> orient(const float* rgb, int height, int width, int orientation);

// (3, H, W) display RGB -> (H, W, 3) interleaved, clamped, scaled to 2^bits - 1 and
// rounded half to even; out holds H*W*3 uint8 (bits 8) or uint16 (bits 16), or float32
// (bits 32: the values unchanged, as the host's float TIFF).
void quantise(const float* rgb, int height, int width, int bits, void* out);

// Width and height of the finished image of a frame (swapped for orientations 5..8).
std::pair<int, int> output_size(const BayerFrame& frame);

// The whole postprocess of one frame after blending: image is the frame's (3, height, width)
// window of the network output (tiling.h: Blender with that window), finished in place; turn
// upright, quantise into out. finishing: exposure compensation, highlights and output space
// (the image then in the space's primaries and curve).
void postprocess(float* image, const BayerFrame& frame, double exposure, Look look, int bits, void* out,
                 const Finishing& finishing = {});

}  // namespace edge4k
