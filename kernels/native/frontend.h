// raw_preprocess in C++: Bayer mosaic -> what the network stages take (the packed
// RAW, the thumbnail and the camera conditioning). The C++ twins of kernels/raw.py;
// the v2 data contract (RGGB phase padding, companding, the new meta vector) is a
// change to this file and frontend.cc only.
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
  std::vector<uint16_t> bayer;     // height * width, row-major
};

// Throws Error naming what is wrong: size not even and positive, a buffer of another
// size, an unknown CFA, a white level not above every black level.
void check_frame(const BayerFrame& frame);

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

// Everything the network stages take from one frame.
struct FrontendOutput {
  std::vector<float> thumb;    // (4, thumb_size, thumb_size): the global stage's image input
  std::vector<float> meta;     // the global stage's conditioning vector
  std::vector<float> packed;   // (4, padded_height / 2, padded_width / 2), reflection-padded
};

// raw_preprocess for a frame whose tile plan pads it to padded_height x padded_width.
FrontendOutput frontend(const BayerFrame& frame, int padded_height, int padded_width, int thumb_size);

}  // namespace edge4k
