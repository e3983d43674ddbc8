// The pipeline behind libedge4k and edge4k_runner: a compiled build opened once,
// then frames through the six stages (frontend, global, tiled encoder / backbone /
// decoder with blending, postprocess), each stage timed.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "edge4k_kernels.h"
#include "engine.h"
#include "json.h"
#include "measure.h"

namespace edge4k {

// Thrown for a build that cannot be used (unreadable, another preset or frame size);
// other errors are plain Error.
struct BuildError : Error {
  using Error::Error;
};

struct Build {
  std::string dir;
  Json manifest;
  int compression = 0, thumb_size = 0, batch = 1, tile = 0, overlap = 0, latent_channels = 0, global_dim = 0;
  bool native = false;
  bool raw_skip = false;   // the decoder returns a residual over the Malvar-He-Cutler base (add_mhc_base)
  int padded[2] = {0, 0};
};

// Reads and range-checks (runtime/limits.json) the manifest's fields the runner sizes buffers from.
Build open_build(const std::string& dir);

// Each stage's input shapes and its output shape as the runner allocates and reads them.
std::map<std::string, Signature> buffer_shapes(const Build& b);

class Pipeline {
 public:
  // expect_preset empty: any preset; look: the finishing of every render.
  Pipeline(const std::string& artifacts, int threads, const std::string& expect_preset = "",
           Look look = Look::Natural);

  // One frame -> (H', W', 3) pixels of `bits` (8: uint8, 16: uint16, 32: float32) in `pixels`, resized
  // to fit, upright (H' = W for EXIF orientations 5..8); times every stage into the profile.
  void render(const BayerFrame& frame, int bits, std::vector<uint8_t>* pixels);
  // Exposure compensation, highlight mode and output space of the renders from now on (checked:
  // check_finishing).
  void set_finishing(const Finishing& finishing);
  const Finishing& finishing() const { return finishing_; }

  void reset_profile();
  int runs() const { return runs_; }
  const StageTimer& timer() const { return timer_; }
  // The profile fields the library knows (everything but input, output, power,
  // thermal, created and the timing block's warm-up count).
  Json profile() const;
  const Build& build() const { return build_; }
  Engine& engine() { return *engine_; }

 private:
  // The network over every tile of packed_, blended straight into the frame's window of the
  // padded output: image_, (3, frame_height, frame_width).
  void network(const FrontendOutput& in, const TilePlan& plan, int frame_height, int frame_width);
  // The engine's programs against the manifest and buffer_shapes: one line naming the mismatch.
  void check_signatures() const;
  // engine_->run(stage), its output checked against buffer_shapes before anything reads it.
  Tensor run(const std::string& stage, const std::vector<const float*>& inputs);

  Build build_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, Signature> shapes_;   // buffer_shapes(build_)
  StageTimer timer_;
  int runs_ = 0;
  TilePlan last_plan_;
  Look look_;
  Finishing finishing_;
  int last_width_ = 0, last_height_ = 0;
  std::pair<int, int> last_output_{0, 0};   // width, height of the last image
  double last_exposure_ = 1;
  // The frame buffers, kept from one render to the next as a camera app keeps its own: the first
  // write to fresh memory faults page by page (runtime/pipeline.py: FrameBuffers).
  std::vector<float> packed_, image_;
};

}  // namespace edge4k
