// Baseline JPEG encoder (ITU-T T.81), self-contained so that every runner writes JPEG: the Android
// NDK and iOS ship no libjpeg. It writes what Pillow's libjpeg writes on the host
// (kernels/postprocess.py: write_image): the IJG quality scaling of the Annex K tables, Huffman
// tables optimised for the image, 4:4:4 chroma from quality 90 up and 4:2:0 below.
#pragma once

#include <cstdint>
#include <string>

namespace edge4k {

// rgb: width*height*3 bytes, rows top to bottom. quality: 1-100. app1: the APP1 payload written
// as it is ("Exif\0\0" + TIFF block; empty: none). icc: an ICC profile for APP2 (ICC_PROFILE
// chunks; empty: none). Returns the whole file.
std::string encode_jpeg(const uint8_t* rgb, int width, int height, int quality, const std::string& app1,
                        const std::string& icc);

}  // namespace edge4k
