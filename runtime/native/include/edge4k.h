/* libedge4k: render a camera's Bayer RAW frame into RGB with a compiled Edge4K build,
 * from C, C++ or (through JNI) an Android app. The library is what `edge4k_runner`
 * runs; see README.md, "Use from an app (C)".
 *
 *   edge4k_runner* r = NULL;
 *   if (edge4k_open("build", NULL, &r) != EDGE4K_OK) { puts(edge4k_last_error()); return 1; }
 *   edge4k_frame f = {bayer, width * height, width, height, "RGGB", {512, 512, 512, 512}, 16383,
 *                     {2.0, 1.0, 1.6}, {1, 0, 0, 0, 1, 0, 0, 0, 1}};
 *   size_t bytes = edge4k_output_bytes(width, height, 8);
 *   uint8_t* rgb = malloc(bytes);
 *   if (edge4k_render(r, &f, 8, rgb, bytes) != EDGE4K_OK) puts(edge4k_last_error());
 *   edge4k_close(r);
 *
 * Every function that can fail returns an edge4k_status; on failure nothing was
 * written to the caller's buffers and edge4k_last_error() (per thread) says why in
 * one line. A runner is not thread-safe: use one per thread, or serialise calls. */
#ifndef EDGE4K_H
#define EDGE4K_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EDGE4K_EXPORT __attribute__((visibility("default")))
#else
#define EDGE4K_EXPORT
#endif

typedef enum edge4k_status {
  EDGE4K_OK = 0,
  EDGE4K_INVALID_ARGUMENT = 1, /* NULL pointer, zero or mismatched size, unknown CFA, bad bit depth */
  EDGE4K_BUILD_ERROR = 2,      /* the build cannot be read, or is for another preset or frame size */
  EDGE4K_ENGINE_ERROR = 3,     /* the engine (ExecuTorch, ONNX Runtime + QNN) is missing or failed */
  EDGE4K_INTERNAL_ERROR = 4
} edge4k_status;

typedef struct edge4k_runner edge4k_runner;

/* What this header declares beyond the first release, for apps that check at compile time:
 * 2: edge4k_set_finishing and edge4k_icc_profile; 3: bits 32 (float32 pixels) in edge4k_render
 * and edge4k_output_bytes. Additions only: older callers keep working. */
#define EDGE4K_API_LEVEL 3

typedef struct edge4k_open_options {
  int threads;               /* <= 0: the engine's default. ExecuTorch builds share one thread pool per
                                process: while another runner is open, a different count is refused
                                (EDGE4K_ENGINE_ERROR); 0 takes the pool as it is */
  const char* expect_preset; /* NULL: any; else a build for another preset is refused */
  const char* look;          /* finishing: "natural" (NULL: the default) or "neutral" (colorimetric sRGB) */
} edge4k_open_options;

/* One Bayer frame and the metadata the frontend needs (what LibRaw reports). */
typedef struct edge4k_frame {
  const uint16_t* bayer;    /* height rows of width samples */
  size_t bayer_count;       /* samples in bayer: must be width * height */
  int width, height;        /* even */
  const char* cfa;          /* "RGGB", "BGGR", "GRBG" or "GBRG": the pattern at the origin */
  double black_level[4];    /* per channel R, Gr, Gb, B */
  double white_level;
  double wb_gains[3];       /* R, G, B with G = 1 */
  double srgb_from_cam[9];  /* row-major white-balanced camera RGB -> linear sRGB */
  int orientation;          /* EXIF Orientation 1..8 (0: 1); the image is rendered upright */
} edge4k_frame;

EDGE4K_EXPORT const char* edge4k_version(void);
/* The last error of this thread, one line; "" if none. */
EDGE4K_EXPORT const char* edge4k_last_error(void);

/* Opens a compiled build (the folder with manifest.json). options may be NULL. */
EDGE4K_EXPORT edge4k_status edge4k_open(const char* build_dir, const edge4k_open_options* options,
                                        edge4k_runner** out);
EDGE4K_EXPORT void edge4k_close(edge4k_runner* runner);

/* Bytes of an (height, width, 3) image at 8, 16 or 32 (float) bits per sample; 0 for other depths. */
EDGE4K_EXPORT size_t edge4k_output_bytes(int width, int height, int bits);

/* Renders frame into rgb: (height, width, 3) interleaved uint8 (bits 8), uint16 (bits 16)
 * or float32 (bits 32, API level 3: the finished values, unquantised; native byte order),
 * upright: (width, height, 3) for orientations 5..8;
 * rgb_bytes must be edge4k_output_bytes(). Each call's per-stage times are added to
 * the runner's profile. */
EDGE4K_EXPORT edge4k_status edge4k_render(edge4k_runner* runner, const edge4k_frame* frame, int bits, void* rgb,
                                          size_t rgb_bytes);

/* Finishing beyond the look, as `edge4k run`'s --exposure, --highlights and --output-space
 * (kernels/rawcolour.py, kernels/colourspace.py). A zeroed struct is the default. */
typedef struct edge4k_finishing {
  double exposure_ev;       /* exposure compensation in stops, -10..+10, on top of either look */
  const char* highlights;   /* "clip" (NULL: the default) or "reconstruct" (clipped channels rebuilt from the others) */
  const char* output_space; /* "srgb" (NULL: the default), "display-p3", "adobe-rgb", "prophoto" or
                               "rec2020-linear" (prophoto and rec2020-linear render at 16 bits only) */
} edge4k_finishing;

/* Sets the finishing of this runner's renders from now on (API level 2). On failure
 * (EDGE4K_INVALID_ARGUMENT: a value out of range, an unknown name) the runner's finishing is unchanged. */
EDGE4K_EXPORT edge4k_status edge4k_set_finishing(edge4k_runner* runner, const edge4k_finishing* finishing);
/* The ICC profile the image of the current output space embeds, *size bytes (API level 2);
 * NULL and 0 for sRGB (tag the image as sRGB). Valid until the next edge4k_set_finishing. */
EDGE4K_EXPORT const void* edge4k_icc_profile(edge4k_runner* runner, size_t* size);

/* Median, min and max milliseconds of one stage ("raw_preprocess", "global", "encoder",
 * "backbone", "decoder", "postprocess" or "total") over the renders since open or reset. */
EDGE4K_EXPORT edge4k_status edge4k_stage_latency_ms(edge4k_runner* runner, const char* stage, double* median,
                                                    double* min, double* max);
/* Forgets the renders so far (e.g. warm-up runs). */
EDGE4K_EXPORT edge4k_status edge4k_reset_profile(edge4k_runner* runner);
/* The profile of the renders so far as JSON (edge4k.profile/1's fields that the
 * library knows: latency_ms, tiling, memory, device, model, stages, versions, ...);
 * NULL on error. Valid until the next call on this runner. */
EDGE4K_EXPORT const char* edge4k_profile_json(edge4k_runner* runner);

#ifdef __cplusplus
}
#endif

#endif /* EDGE4K_H */
