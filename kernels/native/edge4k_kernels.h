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
//   Blender                  kernels/tiling.py     Blender
//   finish, orient, quantise kernels/postprocess.py the same names
// Layouts are the Python ones: planar CHW float32 in, interleaved HWC out.
#pragma once

#include "common.h"
#include "frontend.h"
#include "postprocess.h"
#include "tiling.h"
