// Image decoding to RGB, matching what PIL (Image.open(...).convert('RGB')) gives: the format is told by the first
// bytes (format.h, shared with the datasets' image check), then JPEG goes to libjpeg-turbo (jpeg.cpp), WebP to
// libwebp (webp.cpp), and PNG, GIF and BMP to stb_image (here).
// What this is not: PIL-exact for 16-bit grey PNGs (stb reduces them to 8 bits its own way), nor a reader of the
// BMP variants stb does not read (RLE-compressed); TIFF is refused with a clear error.
//
// stb_image is compiled into this file with STB_IMAGE_STATIC, so its symbols stay private to this translation
// unit and cannot clash with another library that embeds stb.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "core/api/error.h"
#include "core/lib/image/decoders.h"
#include "core/lib/image/format.h"
#include "core/lib/image/image.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO   // we read the bytes ourselves, to report OS errors with the path
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wpedantic"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

namespace mmr::image {

namespace detail {

void check_pixel_count(int64_t width, int64_t height, const std::string& source) {
  if (width * height > kMaxPixels) {
    throw DataError(fmt::format("{}: image is {}x{} pixels, more than the {} PIL accepts (decompression bomb?)", source,
                                width, height, kMaxPixels));
  }
}

// An uncompressed BMP must hold the rows its header promises. stb_image reads missing bytes as zeros, so a
// 255-byte file claiming 7 x 16,711,685 pixels decoded (slowly) into a black image; PIL refuses a truncated file.
// RLE and headers too short to read are left to stb, which refuses them.
void check_bmp_size(const uint8_t* bytes, size_t size, const std::string& source) {
  const auto u16 = [&](size_t at) { return int64_t{bytes[at]} | int64_t{bytes[at + 1]} << 8; };
  const auto u32 = [&](size_t at) { return u16(at) | u16(at + 2) << 16; };
  if (size < 30) return;
  const int64_t offset = u32(10), header_size = u32(14);
  int64_t width = 0;
  int64_t height = 0;
  int64_t bits = 0;
  if (header_size == 12) {  // BITMAPCOREHEADER (OS/2): 16-bit sizes, no compression field
    width = u16(18);
    height = u16(20);
    bits = u16(24);
  } else {
    if (size < 34) return;
    const int64_t compression = u32(30);
    if (compression == 1 || compression == 2) return;  // RLE: refused by stb, which reads every other value as raw
    width = static_cast<int32_t>(u32(18));
    height = static_cast<int32_t>(u32(22));
    bits = u16(28);
  }
  if (width <= 0 || height == 0) return;  // stb refuses these itself (it reads any bit count, 65312 too)
  const int64_t rows = height < 0 ? -height : height;
  const int64_t row_bytes = (width * bits + 31) / 32 * 4;  // < 2^31 * 2^16: no overflow; row_bytes * rows may
  const int64_t available = static_cast<int64_t>(size) - offset;
  if (available < 0 || row_bytes > available / rows || row_bytes * rows > available)
    throw DataError(fmt::format("{}: cannot decode image: truncated BMP: its {}x{} pixels at {} bits need {} rows of "
                                "{} bytes from byte {}, the file has {} bytes", source, width, rows, bits, rows,
                                row_bytes, offset, size));
}

// What a PNG claims, checked against its size before stb allocates for the claim (found by fuzz/fuzz_image_png):
//  * every chunk's data must be in the file: stb grows its buffer to an IDAT chunk's stated length before reading
//    it, so a 167-byte file stating 1.5 GB took 2 GiB;
//  * the image data is zlib-compressed, and deflate cannot shrink data more than 1032 : 1 (a 258-byte match in two
//    bits): a header claiming more pixel bytes than the file could hold at that ratio is a broken file, for which
//    stb would first allocate the whole image.
void check_png_size(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size < 26) return;  // no IHDR: stb refuses the file
  const auto u32 = [&](size_t at) {
    return int64_t{bytes[at]} << 24 | int64_t{bytes[at + 1]} << 16 | int64_t{bytes[at + 2]} << 8 | bytes[at + 3];
  };
  const int64_t file_size = static_cast<int64_t>(size);
  for (int64_t at = 8; at + 8 <= file_size;) {  // chunks: length, type, data, CRC
    const int64_t length = u32(static_cast<size_t>(at));
    const std::string type(reinterpret_cast<const char*>(bytes) + at + 4, 4);
    if (length > file_size - at - 8)
      throw DataError(fmt::format("{}: cannot decode image: truncated PNG: chunk '{}' at byte {} states {} bytes, "
                                  "the file has {} after it", source, type, at, length, file_size - at - 8));
    if (type == "IEND") break;
    at += 12 + length;
  }
  const int64_t width = u32(16);
  const int64_t height = u32(20);
  const int64_t depth = bytes[24];
  const int64_t colour = bytes[25];
  const int64_t channels = colour == 0 || colour == 3 ? 1 : colour == 2 ? 3 : colour == 4 ? 2 : 4;
  const int64_t pixel_bytes = height * ((width * channels * depth + 7) / 8);  // without the rows' filter bytes
  constexpr int64_t kMaxDeflateRatio = 1032;
  if (pixel_bytes > kMaxDeflateRatio * (static_cast<int64_t>(size) + 1))
    throw DataError(fmt::format("{}: cannot decode image: truncated or corrupt PNG: its {}x{} pixels need {} bytes, "
                                "more than the {}-byte file can hold compressed", source, width, height, pixel_bytes,
                                size));
}

RgbImage decode_with_stb(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw DataError(fmt::format("{}: cannot decode image: {} bytes is more than stb_image reads", source, size));
  }
  const int len = static_cast<int>(size);
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, len, &width, &height, &channels)) {
    throw DataError(fmt::format("{}: cannot decode image: {} (corrupt or truncated file?)", source,
                                stbi_failure_reason()));
  }
  check_pixel_count(width, height, source);
  const ImageFormat format = sniff_image_format(bytes, size);
  if (format == ImageFormat::kBmp) check_bmp_size(bytes, size, source);
  if (format == ImageFormat::kPng) check_png_size(bytes, size, source);
  stbi_uc* data = stbi_load_from_memory(bytes, len, &width, &height, &channels, 0);
  if (!data) {
    throw DataError(fmt::format("{}: cannot decode image: {} (corrupt or truncated file?)", source,
                                stbi_failure_reason()));
  }
  RgbImage out;
  out.width = width;
  out.height = height;
  const size_t count = static_cast<size_t>(width) * height;
  out.pixels.resize(count * 3);
  // PIL's convert('RGB'): L and LA replicate the grey value; RGBA and LA drop alpha without compositing.
  for (size_t i = 0; i < count; ++i) {
    const stbi_uc* s = data + i * channels;
    uint8_t* d = &out.pixels[i * 3];
    if (channels <= 2) {
      d[0] = d[1] = d[2] = s[0];
    } else {
      d[0] = s[0];
      d[1] = s[1];
      d[2] = s[2];
    }
  }
  stbi_image_free(data);
  return out;
}

}  // namespace detail

namespace {

[[noreturn]] void unsupported(ImageFormat format, const std::string& source) {
  throw DataError(fmt::format("{}: cannot decode image: {} (supported formats: {})", source,
                              format == ImageFormat::kTiff ? "TIFF is not supported" : "unknown image type",
                              kDecodableFormats));
}

}  // namespace

RgbImage decode_rgb(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size == 0) throw DataError(fmt::format("{}: cannot decode image: the file is empty", source));
  const ImageFormat format = sniff_image_format(bytes, size);
  switch (format) {
    case ImageFormat::kJpeg: return detail::decode_jpeg(bytes, size, source);
    case ImageFormat::kWebp: return detail::decode_webp(bytes, size, source);
    case ImageFormat::kPng:
    case ImageFormat::kGif:
    case ImageFormat::kBmp: return detail::decode_with_stb(bytes, size, source);
    case ImageFormat::kTiff:
    case ImageFormat::kUnknown: break;
  }
  unsupported(format, source);
}

ImageSize image_size(const uint8_t* bytes, size_t size, const std::string& source) {
  const ImageFormat format = sniff_image_format(bytes, size);
  if (format == ImageFormat::kJpeg) return detail::jpeg_size(bytes, size, source);
  if (format == ImageFormat::kWebp) return detail::webp_size(bytes, size, source);
  if (size == 0) throw DataError(fmt::format("{}: cannot decode image: the file is empty", source));
  if (!is_decodable(format)) unsupported(format, source);
  int width = 0, height = 0, channels = 0;
  if (size > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !stbi_info_from_memory(bytes, static_cast<int>(size), &width, &height, &channels)) {
    throw DataError(fmt::format("{}: cannot decode image: {} (corrupt or truncated file?)", source,
                                size > static_cast<size_t>(std::numeric_limits<int>::max()) ? "too large"
                                                                                             : stbi_failure_reason()));
  }
  return {width, height};
}

RgbImage load_rgb(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError(fmt::format("{}: cannot open image: no such file", path));
  if (!fs::is_regular_file(path, ec)) throw DataError(fmt::format("{}: cannot open image: not a regular file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(fmt::format("{}: cannot open image for reading: {}", path, std::strerror(errno)));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw DataError(fmt::format("{}: cannot read image: {}", path, std::strerror(errno)));
  return decode_rgb(bytes.data(), bytes.size(), path);
}

}  // namespace mmr::image
