// Which image format a file is, by its first bytes. One function for the decoder (decode.cpp) and for the
// datasets' image check (core/lib/data/pipeline.cpp, `check_images`), so that a file the check passes is one the
// decoder reads: a row whose image the decoder cannot read is reported as a bad row when the data is loaded,
// instead of failing the training stage that later decodes it.
// Header-only and dependency-free: the dataset library includes it without linking the decoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace mmr::image {

enum class ImageFormat { kUnknown, kJpeg, kPng, kGif, kBmp, kWebp, kTiff };

// The first bytes sniff_image_format needs to see (fewer are fine: it then recognises less).
constexpr size_t kSniffBytes = 12;

// The formats decode_rgb reads, for messages.
constexpr const char* kDecodableFormats = "JPEG, PNG, GIF, BMP or WebP";

// The magic numbers PIL's plugins accept for these formats (JpegImagePlugin, PngImagePlugin, ...).
inline ImageFormat sniff_image_format(const uint8_t* h, size_t n) {
  if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return ImageFormat::kJpeg;
  if (n >= 8 && std::memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0) return ImageFormat::kPng;
  if (n >= 6 && (std::memcmp(h, "GIF87a", 6) == 0 || std::memcmp(h, "GIF89a", 6) == 0)) return ImageFormat::kGif;
  if (n >= 2 && h[0] == 'B' && h[1] == 'M') return ImageFormat::kBmp;
  if (n >= 12 && std::memcmp(h, "RIFF", 4) == 0 && std::memcmp(h + 8, "WEBP", 4) == 0) return ImageFormat::kWebp;
  if (n >= 4 && (std::memcmp(h, "II*\0", 4) == 0 || std::memcmp(h, "MM\0*", 4) == 0)) return ImageFormat::kTiff;
  return ImageFormat::kUnknown;
}

// TIFF is recognised only to name it in errors: PIL reads it, we do not (libtiff's many variants are not worth a
// decoder for LLaVA data, which is JPEG and PNG).
inline bool is_decodable(ImageFormat f) { return f != ImageFormat::kUnknown && f != ImageFormat::kTiff; }

inline const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kJpeg: return "JPEG";
    case ImageFormat::kPng: return "PNG";
    case ImageFormat::kGif: return "GIF";
    case ImageFormat::kBmp: return "BMP";
    case ImageFormat::kWebp: return "WebP";
    case ImageFormat::kTiff: return "TIFF";
    case ImageFormat::kUnknown: break;
  }
  return "unknown";
}

}  // namespace mmr::image
