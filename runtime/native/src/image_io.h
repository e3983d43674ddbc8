// Output files: the RGB image (PNG 8/16-bit and TIFF 16/8-bit, deflated with zlib;
// 16-bit binary PPM), SHA-256 for the profile, and atomic writes (a temporary file
// beside the target, then rename).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace edge4k {

std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);

std::string read_file(const std::string& path);
// Writes each (path, bytes) to a fresh temporary beside it (mkstemp: O_EXCL, never through a
// symlink), then, once all are written, renames them into place: one run's outputs are
// published together, and a failed write leaves every old file as it was.
void write_files_atomic(const std::vector<std::pair<std::string, std::string>>& files);
void write_file_atomic(const std::string& path, const std::string& bytes);
// SIGINT, SIGTERM and SIGHUP remove the temporaries being written, then end the process as
// the signal would.
void remove_temporaries_on_signals();

enum class ImageFormat { Png, Tiff, Ppm };
struct OutputSpec {
  ImageFormat format;
  int bits;
};

// The format from the extension (.png, .tif/.tiff, .ppm) and the bit depth: `bits`
// if not 0, else the format's default (PNG 8, TIFF 16, PPM 16). Throws for others.
OutputSpec output_spec(const std::string& path, int bits = 0);

// (H, W, 3) interleaved pixels (uint8 for 8 bits, uint16 for 16) -> file bytes. icc: the ICC
// profile the image embeds (PNG iCCP named icc_name, TIFF tag 34675; .ppm has none); empty: sRGB
// (a PNG says so in its sRGB chunk).
std::string encode_image(const OutputSpec& spec, const void* pixels, int width, int height, const std::string& icc = "",
                         const std::string& icc_name = "");

}  // namespace edge4k
