// Edge4K CPU kernels in C++: the native runner's raw_preprocess, tiling and
// postprocess, one header each (frontend.h, tiling.h, postprocess.h).
//
// Each function is the C++ twin of one Python function and is tested against it
// for equality (tests/test_native_kernels.py):
//   pack, thumbnail          kernels/raw.py        pack(), thumbnail()
//   noise_estimate, exposure_gain, meta_vector, frontend
//                            kernels/raw.py        the same names, prepare()
//   metered_gain             kernels/rawcolour.py  metered_gain()
//   pad_reflect              kernels/tiling.py     pad_packed()
//   plan_tiles, blend_weight kernels/tiling.py     plan_tiles(), blend_weight()
//   plan_frame               kernels/tiling.py     plan_frame() (so PHASE_PAD is kernels/raw.py's)
//   Blender                  kernels/tiling.py     Blender
//   finish, orient, quantise kernels/postprocess.py the same names
//   reconstruct_highlights   kernels/postprocess.py reconstruct_highlights()
//   target_from_cam, encode_space, icc_profile
//                            kernels/colourspace.py target_from_cam(), encode(), icc_profile()
//   mhc_demosaic_weight, add_mhc_base
//                            models/blocks.py      mhc_demosaic_weight(), BayerDemosaic + pixel_shuffle
// Layouts are the Python ones: planar CHW float32 in, interleaved HWC out.
#pragma once

#include "colourspace.h"
#include "common.h"
#include "demosaic.h"
#include "frontend.h"
#include "postprocess.h"
#include "tiling.h"
