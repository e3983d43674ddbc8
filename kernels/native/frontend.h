// raw_preprocess in C++: Bayer mosaic -> what the network stages take (the packed
// RAW in RGGB phase, the thumbnail, the capture's meta vector) and what finishing
// needs (the natural look's exposure gain, where the frame sits in the padding).
// The C++ twins of kernels/raw.py.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace edge4k {

// What the raw frontend needs from a RAW file; the host decodes the file with
// LibRaw and hands these over (kernels/raw.py: RawFrame).
struct BayerFrame {
  int width = 0, height = 0;
  std::string cfa;                 // pattern at the origin: RGGB, BGGR, GRBG or GBRG
  double black_level[4] = {};      // per packed channel [R, Gr, Gb, B]
  double white_level = 0;
  double wb_gains[3] = {1, 1, 1};  // R, G, B with G = 1
  double srgb_from_cam[9] = {};    // row-major 3x3
  int orientation = 1;             // EXIF Orientation 1..8; finishing turns the image upright
  std::vector<uint16_t> bayer;     // height * width, row-major
};

// Throws Error naming what is wrong: size not even and positive, a buffer of another
// size, an unknown CFA, a white level not above every black level, an orientation
// outside 1..8.
void check_frame(const BayerFrame& frame);

// Every frame is reflect-padded into RGGB phase with PHASE_PAD more pixels each way
// (kernels/raw.py: phase_padding). (top, left) padding for a CFA.
constexpr int PHASE_PAD = 6;
std::pair<int, int> phase_origin(const std::string& cfa);

// Bayer -> packed (4, (H+6)/2, (W+6)/2) float32 in [R, Gr, Gb, B] order, RGGB phase:
// black-subtracted, white-balanced (gains scaled so the smallest is 1), divided by the
// white level, clipped to [0, 1], square-root companded. Computed as numpy does (double,
// the scale rounded to float32 first), so the result is bit-identical.
std::vector<float> pack(const BayerFrame& frame);

// Area-averaged (channels, size, size) thumbnail (torch's adaptive_avg_pool2d) of the
// top-left height x width of packed planes of rows x cols (0: height x width).
std::vector<float> thumbnail(const float* packed, int channels, int height, int width, int size, int rows = 0,
                             int cols = 0);

// (shot, read) noise variance measured on a packed frame (kernels/raw.py: noise_estimate),
// the top-left height x width of planes of rows x cols (0: height x width).
std::pair<double, double> noise_estimate(const float* packed, int height, int width, int rows = 0, int cols = 0);

// The natural look's automatic exposure gain from the thumbnail (kernels/raw.py: exposure_gain).
double exposure_gain(const float* thumb, int size, const double* srgb_from_cam);

// The natural look's finishing gain, highlight-aware (kernels/rawcolour.py: metered_gain). The
// network is still conditioned on exposure_gain, the rule it was trained with.
double metered_gain(const float* thumb, int size, const double* srgb_from_cam);

// The global stage's conditioning: normalised logs of shot, read, exposure, R and B gains.
constexpr int META_SIZE = 5;
std::vector<float> meta_vector(const BayerFrame& frame, double shot, double read, double exposure);

// Everything the later stages take from one frame.
struct FrontendOutput {
  std::vector<float> thumb;    // (4, thumb_size, thumb_size): the global stage's image input
  std::vector<float> meta;     // (META_SIZE,): the global stage's conditioning vector
  std::vector<float> packed;   // (4, padded_height / 2, padded_width / 2), reflection-padded (empty if
                               // the caller gave frontend() packed_into)
  double exposure = 1;         // the natural look's gain the network is conditioned on
  double metered = 1;          // the natural look's finishing gain (metered_gain)
  int top = 0, left = 0;       // where the frame sits in the padded output
};

// raw_preprocess for a frame whose tile plan pads it (after the phase padding) to
// padded_height x padded_width. packed_into: a (4, padded_height / 2, padded_width / 2) buffer to
// write the packed frame to instead of FrontendOutput::packed.
FrontendOutput frontend(const BayerFrame& frame, int padded_height, int padded_width, int thumb_size,
                        float* packed_into = nullptr);

}  // namespace edge4k
