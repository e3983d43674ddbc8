// Output files: the RGB image (PNG 8/16-bit and TIFF 16/8-bit/float, deflated with zlib;
// baseline JPEG, jpeg.h; 16-bit binary PPM), each
// tagged with its ICC profile and EXIF as kernels/postprocess.py: write_image() tags the host's;
// SHA-256 for the profile, and atomic writes (a temporary file beside the target, then rename).
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

enum class ImageFormat { Png, Tiff, Ppm, Jpeg };
struct OutputSpec {
  ImageFormat format;
  int bits;   // 8, 16, or 32 (float32, TIFF only)
};

// kernels/postprocess.py: DEFAULT_QUALITY, the JPEG quality when none is asked for.
constexpr int kDefaultJpegQuality = 95;

// The format from the extension (.png, .tif/.tiff, .jpg/.jpeg, .ppm) and the bit depth: `bits`
// if not 0, else the format's default (PNG 8, TIFF 16, JPEG 8, PPM 16). Throws for others.
OutputSpec output_spec(const std::string& path, int bits = 0);

// The capture's facts for the image's EXIF (kernels/raw.py: RawFrame.exif, which the sidecar
// carries), as read: untrusted. Empty text or a number that is not finite and positive is left out.
struct ExifFacts {
  std::string make, model, datetime;
  double exposure_time = 0, iso = 0;
};

// What the image carries besides its pixels. icc: the ICC profile (PNG iCCP named icc_name, TIFF
// tag 34675, JPEG APP2; .ppm has none); empty: sRGB (a PNG says so in its sRGB chunk, a TIFF or
// JPEG embeds the host's sRGB profile, kernels/postprocess.py: srgb_icc_profile()). exif: the
// facts and Orientation 1 (PNG eXIf, JPEG APP1, TIFF IFD0 as TIFF/EP tags; .ppm has none).
// quality: JPEG's, 1-100 (0: kDefaultJpegQuality).
struct ImageTags {
  std::string icc, icc_name;
  ExifFacts exif;
  int quality = 0;
};

// kernels/postprocess.py: _png_exif(): the facts as a TIFF-structured EXIF block (big-endian,
// IFD0 and an EXIF IFD), byte for byte as Pillow serialises the host's.
std::string exif_block(const ExifFacts& facts);

// (H, W, 3) interleaved pixels (uint8 for 8 bits, uint16 for 16, float32 for 32) -> file bytes.
std::string encode_image(const OutputSpec& spec, const void* pixels, int width, int height, const ImageTags& tags);

}  // namespace edge4k
