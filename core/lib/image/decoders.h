// The per-format decoders behind decode_rgb (decode.cpp); private to core/lib/image.
// Each returns RGB as PIL's Image.open(...).convert('RGB') gives it, and throws mmr::DataError naming `source` for
// a corrupt, truncated or unsupported file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/lib/image/image.h"

namespace mmr::image::detail {

// PIL refuses images above 2 x Image.MAX_IMAGE_PIXELS (DecompressionBombError); so do we, before decoding.
constexpr int64_t kMaxPixels = 2 * int64_t{89'478'485};
// Throws the DataError PIL's check would raise for a width x height image over kMaxPixels.
void check_pixel_count(int64_t width, int64_t height, const std::string& source);

RgbImage decode_jpeg(const uint8_t* bytes, size_t size, const std::string& source);   // jpeg.cpp: libjpeg-turbo
ImageSize jpeg_size(const uint8_t* bytes, size_t size, const std::string& source);
ImageSize webp_size(const uint8_t* bytes, size_t size, const std::string& source);
RgbImage decode_webp(const uint8_t* bytes, size_t size, const std::string& source);   // webp.cpp: libwebp
RgbImage decode_with_stb(const uint8_t* bytes, size_t size, const std::string& source);   // decode.cpp: PNG, GIF, BMP

}  // namespace mmr::image::detail
