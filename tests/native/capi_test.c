/* The libedge4k C API from plain C: every bad-input rule (status code, one-line
 * message, caller's buffer untouched) and a render with profile reads.
 * usage: edge4k_capi_test BUILD_DIR WIDTH HEIGHT PRESET OUT.rgb
 * Writes the 8-bit render of a synthetic frame to OUT.rgb and ends with the line
 * "capi_test: N passed, M failed"; exit status 0 only if nothing failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edge4k.h"

static int passed = 0, failed = 0;

static void expect(int ok, const char* what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    printf("FAILED: %s (last error: %s)\n", what, edge4k_last_error());
  }
}

/* The call failed with `status`, said something containing `needle`, left buf alone. */
static void expect_error(edge4k_status got, edge4k_status status, const char* needle, const unsigned char* buf,
                         size_t n, const char* what) {
  int untouched = 1;
  for (size_t i = 0; buf && i < n; ++i) untouched &= buf[i] == 0xA5;
  expect(got == status && strstr(edge4k_last_error(), needle) != NULL && strchr(edge4k_last_error(), '\n') == NULL &&
             untouched, what);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s BUILD_DIR WIDTH HEIGHT PRESET OUT.rgb\n", argv[0]);
    return 2;
  }
  const char* build = argv[1];
  const int width = atoi(argv[2]), height = atoi(argv[3]);
  const size_t n = (size_t)width * height, bytes8 = edge4k_output_bytes(width, height, 8);
  uint16_t* bayer = malloc(n * sizeof *bayer);
  unsigned char* rgb = malloc(edge4k_output_bytes(width, height, 16));
  for (int y = 0; y < height; ++y)   /* a smooth gradient with a 2x2 colour pattern */
    for (int x = 0; x < width; ++x)
      bayer[(size_t)y * width + x] = (uint16_t)(64 + (x * 600) / width + (y * 300) / height + ((x & 1) + (y & 1)) * 40);
  edge4k_frame frame = {bayer, n, width, height, "RGGB", {64, 64, 64, 64}, 1023, {1.8, 1.0, 1.5},
                        {1, 0, 0, 0, 1, 0, 0, 0, 1}};
  edge4k_runner* r = NULL;

  /* open */
  expect_error(edge4k_open(build, NULL, NULL), EDGE4K_INVALID_ARGUMENT, "out is NULL", NULL, 0, "open: NULL out");
  expect_error(edge4k_open(NULL, NULL, &r), EDGE4K_INVALID_ARGUMENT, "build_dir", NULL, 0, "open: NULL dir");
  expect(r == NULL, "open: failure leaves *out NULL");
  expect_error(edge4k_open("/no/such/build", NULL, &r), EDGE4K_BUILD_ERROR, "/no/such/build", NULL, 0,
               "open: missing build");
  edge4k_open_options other = {0, "e4k-s-f32"};
  expect_error(edge4k_open(build, &other, &r), EDGE4K_BUILD_ERROR, "not e4k-s-f32", NULL, 0,
               "open: build for another preset");
  edge4k_open_options mine = {1, argv[4]};
  expect(edge4k_open(build, &mine, &r) == EDGE4K_OK && r != NULL, "open: the build");
  if (!r) {
    printf("capi_test: %d passed, %d failed\n", passed, failed);
    return 1;
  }

  /* render: bad input, each refused with the caller's buffer untouched */
  memset(rgb, 0xA5, bytes8);
  edge4k_frame bad = frame;
  expect_error(edge4k_render(NULL, &frame, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "runner is NULL", rgb, bytes8,
               "render: NULL runner");
  expect_error(edge4k_render(r, NULL, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "frame is NULL", rgb, bytes8,
               "render: NULL frame");
  expect_error(edge4k_render(r, &frame, 8, NULL, bytes8), EDGE4K_INVALID_ARGUMENT, "rgb is NULL", NULL, 0,
               "render: NULL output");
  bad.bayer = NULL;
  expect_error(edge4k_render(r, &bad, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "bayer is NULL", rgb, bytes8,
               "render: NULL Bayer buffer");
  bad = frame;
  bad.bayer_count = 0;
  expect_error(edge4k_render(r, &bad, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "zero", rgb, bytes8,
               "render: zero size");
  bad = frame;
  bad.bayer_count = n - 7;
  expect_error(edge4k_render(r, &bad, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "bayer_count", rgb, bytes8,
               "render: Bayer size does not match width x height");
  bad = frame;
  bad.cfa = "RGBW";
  expect_error(edge4k_render(r, &bad, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "CFA 'RGBW'", rgb, bytes8,
               "render: unknown CFA");
  bad = frame;
  bad.cfa = NULL;
  expect_error(edge4k_render(r, &bad, 8, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "cfa is NULL", rgb, bytes8,
               "render: NULL CFA");
  expect_error(edge4k_render(r, &frame, 12, rgb, bytes8), EDGE4K_INVALID_ARGUMENT, "bits must be 8, 16 or 32", rgb,
               bytes8, "render: bit depth 12");
  expect(EDGE4K_API_LEVEL >= 3 && edge4k_output_bytes(width, height, 32) == n * 3 * sizeof(float) &&
             edge4k_output_bytes(width, height, 12) == 0,
         "output bytes: float32 at bits 32 (API level 3), none at 12");
  expect_error(edge4k_render(r, &frame, 8, rgb, bytes8 - 1), EDGE4K_INVALID_ARGUMENT, "rgb_bytes", rgb, bytes8,
               "render: output buffer of the wrong size");
  expect_error(edge4k_profile_json(r) ? EDGE4K_OK : EDGE4K_INVALID_ARGUMENT, EDGE4K_INVALID_ARGUMENT,
               "no frame rendered", NULL, 0, "profile before any render");

  /* render for real, 8 and 16 bits */
  expect(edge4k_render(r, &frame, 8, rgb, bytes8) == EDGE4K_OK, "render 8-bit");
  int changed = 0;
  for (size_t i = 0; i < bytes8; ++i) changed |= rgb[i] != 0xA5;
  expect(changed, "render wrote the image");
  FILE* f = fopen(argv[5], "wb");
  expect(f && fwrite(rgb, 1, bytes8, f) == bytes8, "write the 8-bit render");
  if (f) fclose(f);
  expect(edge4k_render(r, &frame, 16, rgb, edge4k_output_bytes(width, height, 16)) == EDGE4K_OK, "render 16-bit");

  /* profile */
  double median = -1, lo = -1, hi = -1;
  expect(edge4k_stage_latency_ms(r, "decoder", &median, &lo, &hi) == EDGE4K_OK && median > 0 && lo <= median &&
             median <= hi, "decoder latency over 2 renders");
  expect_error(edge4k_stage_latency_ms(r, "upsampler", &median, &lo, &hi), EDGE4K_INVALID_ARGUMENT,
               "unknown stage 'upsampler'", NULL, 0, "latency of an unknown stage");
  expect_error(edge4k_stage_latency_ms(r, "decoder", NULL, &lo, &hi), EDGE4K_INVALID_ARGUMENT, "must not be NULL",
               NULL, 0, "latency into NULL");
  const char* json = edge4k_profile_json(r);
  expect(json && strstr(json, "\"latency_ms\"") && strstr(json, "\"stages\"") && strstr(json, "\"runs\": 2"),
         "profile JSON of 2 renders");
  /* a second runner: an ExecuTorch build shares the process's one thread pool, so the same size is
     fine and another size is refused while the first is open (resizing it would deadlock the
     first); ONNX Runtime sessions have their own threads, so there any count opens */
  const int executorch = json && strstr(json, "\"backend\": \"executorch\"") != NULL;
  edge4k_runner* second = NULL;
  edge4k_open_options other_threads = {2, argv[4]};
  if (executorch) {
    expect_error(edge4k_open(build, &other_threads, &second), EDGE4K_ENGINE_ERROR, "cannot be resized under it",
                 NULL, 0, "open: a second runner with another thread count");
    expect(second == NULL, "open: a refused runner is NULL");
  } else {
    expect(edge4k_open(build, &other_threads, &second) == EDGE4K_OK && second != NULL,
           "open: a second runner with its own thread count");
    edge4k_close(second);
  }
  edge4k_open_options default_threads = {0, argv[4]};
  expect(edge4k_open(build, &default_threads, &second) == EDGE4K_OK && second != NULL,
         "open: a second runner with the default threads");
  edge4k_close(second);
  expect(edge4k_reset_profile(r) == EDGE4K_OK && edge4k_profile_json(r) == NULL, "reset forgets the renders");

  edge4k_close(r);
  edge4k_close(NULL);   /* harmless */
  /* with every runner closed the pool may be resized, and a runner on it renders */
  r = NULL;
  expect(edge4k_open(build, &other_threads, &r) == EDGE4K_OK && r != NULL, "open: another thread count once closed");
  expect(r && edge4k_render(r, &frame, 8, rgb, bytes8) == EDGE4K_OK, "render on the resized pool");
  edge4k_close(r);
  free(bayer);
  free(rgb);
  printf("capi_test: %d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
