// Output files: the RGB image (8-bit PNG or 16-bit binary PPM), SHA-256 for the
// profile, and atomic writes (a temporary file beside the target, then rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace edge4k {

std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);

std::string read_file(const std::string& path);
// Writes to "<path>.tmp-<pid>" and renames it onto path; never leaves a partial file.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Bit depth for an output path: .png -> 8, .ppm -> 16; throws for anything else.
int bit_depth_for(const std::string& path);

// (H, W, 3) interleaved pixels (uint8 for 8 bits, uint16 for 16) -> file bytes.
std::string encode_png8(const uint8_t* rgb, int width, int height);
std::string encode_ppm16(const uint16_t* rgb, int width, int height);

}  // namespace edge4k
