// WebP decoding with libwebp, as Pillow does it (WebPImagePlugin over its _webp module): libwebp's animation
// decoder with its default options (RGBA, not premultiplied), first frame. A still image is a one-frame animation;
// an animated one gives its first frame on the canvas (what Image.open shows). convert('RGB') then drops the
// alpha channel without compositing, as for a PNG with alpha (decode.cpp).
#include <memory>

#include <webp/decode.h>
#include <webp/demux.h>

#include <fmt/format.h>

#include "core/api/error.h"
#include "core/lib/image/decoders.h"

namespace mmr::image::detail {

ImageSize webp_size(const uint8_t* bytes, size_t size, const std::string& source) {
  int width = 0, height = 0;
  if (!WebPGetInfo(bytes, size, &width, &height)) {
    throw DataError(fmt::format("{}: cannot decode image: not a valid WebP file (corrupt or truncated?)", source));
  }
  return {width, height};
}

RgbImage decode_webp(const uint8_t* bytes, size_t size, const std::string& source) {
  // The canvas size from the headers first, so that a decompression bomb is refused before libwebp allocates it.
  int width = 0, height = 0;
  if (!WebPGetInfo(bytes, size, &width, &height)) {
    throw DataError(fmt::format("{}: cannot decode image: not a valid WebP file (corrupt or truncated?)", source));
  }
  check_pixel_count(width, height, source);

  const WebPData data{bytes, size};
  const std::unique_ptr<WebPAnimDecoder, decltype(&WebPAnimDecoderDelete)> decoder(WebPAnimDecoderNew(&data, nullptr),
                                                                                  &WebPAnimDecoderDelete);
  WebPAnimInfo info{};
  if (!decoder || !WebPAnimDecoderGetInfo(decoder.get(), &info)) {
    throw DataError(fmt::format("{}: cannot decode image: the WebP container is corrupt or truncated", source));
  }
  uint8_t* rgba = nullptr;   // the canvas, owned by the decoder
  int timestamp_ms = 0;
  if (!WebPAnimDecoderGetNext(decoder.get(), &rgba, &timestamp_ms)) {
    throw DataError(fmt::format("{}: cannot decode image: the WebP image data is corrupt or truncated", source));
  }
  RgbImage out;
  out.width = static_cast<int>(info.canvas_width);
  out.height = static_cast<int>(info.canvas_height);
  const size_t count = static_cast<size_t>(out.width) * out.height;
  out.pixels.resize(count * 3);
  for (size_t i = 0; i < count; ++i) {
    out.pixels[i * 3] = rgba[i * 4];
    out.pixels[i * 3 + 1] = rgba[i * 4 + 1];
    out.pixels[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return out;
}

}  // namespace mmr::image::detail
