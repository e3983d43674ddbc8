// postprocess kernels; see postprocess.h.
#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace edge4k {

void quantise(const float* rgb, int height, int width, int bits, void* out) {
  if (bits != 8 && bits != 16) throw Error("bit depth must be 8 or 16, got " + std::to_string(bits));
  const float peak = static_cast<float>((1 << bits) - 1);
  const size_t n = static_cast<size_t>(height) * width;
  for (int c = 0; c < 3; ++c)
    for (size_t k = 0; k < n; ++k) {
      const float v = std::nearbyint(std::clamp(rgb[c * n + k], 0.0f, 1.0f) * peak);   // half to even
      if (bits == 8)
        static_cast<uint8_t*>(out)[k * 3 + c] = static_cast<uint8_t>(v);
      else
        static_cast<uint16_t*>(out)[k * 3 + c] = static_cast<uint16_t>(v);
    }
}

void postprocess(const float* rgb, const BayerFrame& frame, int bits, void* out) {
  quantise(rgb, frame.height, frame.width, bits, out);
}

}  // namespace edge4k
