// Image decoding to RGB, matching what PIL (Image.open(...).convert('RGB')) gives.
//
// What this is: stb_image for the container formats and JPEG entropy decoding, plus the three JPEG stages where
// stb and libjpeg (which PIL uses) round differently, redone as libjpeg does them by default: the "islow"
// integer IDCT (jidctint), "fancy" chroma upsampling (jdsample: h2v1, h1v2, h2v2) and the YCbCr -> RGB tables
// (jdcolor). With stb's own versions, a 4:2:0 JPEG differs from PIL by up to 3 grey levels; with these it is
// bit-exact on the fixture (tests/data/tiny-llava/images/tall.jpg).
// What this is not: a JPEG decoder of its own (markers, Huffman and progressive scans stay stb's), and not
// PIL-exact for CMYK/YCCK JPEGs or 16-bit grey PNGs (stb's conversions are used there; see load_rgb's notes).
//
// stb_image is compiled into this file with STB_IMAGE_STATIC, so its symbols stay private to this translation
// unit and cannot clash with another library that embeds stb; this also lets us reach its internal JPEG state.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>

#include <fmt/format.h>

#include "core/api/error.h"
#include "core/lib/image/image.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO   // we read the bytes ourselves, to report OS errors with the path
#define STBI_ONLY_JPEG
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
namespace {

namespace fs = std::filesystem;

// PIL refuses images above 2 x Image.MAX_IMAGE_PIXELS (DecompressionBombError); so do we, before decoding.
constexpr int64_t kMaxPixels = 2 * int64_t{89'478'485};

// ---------------------------------------------------------------------------------------------------------------
// libjpeg's islow IDCT: the Loeffler-Ligtenberg-Moschytz 8-point IDCT with 13-bit constants, columns first with
// 2 extra bits kept, then rows, then libjpeg's range-limit table (which clamps, and wraps only for values no
// valid file produces; reproduced anyway).

constexpr int kConstBits = 13;
constexpr int kPass1Bits = 2;
constexpr int64_t kFix_0_298631336 = 2446;
constexpr int64_t kFix_0_390180644 = 3196;
constexpr int64_t kFix_0_541196100 = 4433;
constexpr int64_t kFix_0_765366865 = 6270;
constexpr int64_t kFix_0_899976223 = 7373;
constexpr int64_t kFix_1_175875602 = 9633;
constexpr int64_t kFix_1_501321110 = 12299;
constexpr int64_t kFix_1_847759065 = 15137;
constexpr int64_t kFix_1_961570560 = 16069;
constexpr int64_t kFix_2_053119869 = 16819;
constexpr int64_t kFix_2_562915447 = 20995;
constexpr int64_t kFix_3_072711026 = 25172;

// libjpeg computes in JLONG (64-bit here) and stores the first pass in int.
inline int64_t descale(int64_t x, int n) { return (x + (int64_t{1} << (n - 1))) >> n; }

// libjpeg's idct range limit: x is the IDCT output before adding the 128 centre, masked to 10 bits.
inline stbi_uc idct_range_limit(int64_t x) {
  const int idx = static_cast<int>(x & 1023);
  if (idx < 128) return static_cast<stbi_uc>(idx + 128);
  if (idx < 512) return 255;
  if (idx < 896) return 0;
  return static_cast<stbi_uc>(idx - 896);
}

// One 1-D pass over 8 values v[0*s], ..., v[7*s]; writes the 8 un-descaled results to out[0..7].
inline void idct_1d(int64_t v0, int64_t v1, int64_t v2, int64_t v3, int64_t v4, int64_t v5, int64_t v6, int64_t v7,
                    int64_t out[8]) {
  // Even part.
  int64_t z1 = (v2 + v6) * kFix_0_541196100;
  const int64_t tmp2e = z1 + v6 * -kFix_1_847759065;
  const int64_t tmp3e = z1 + v2 * kFix_0_765366865;
  const int64_t tmp0e = (v0 + v4) * (int64_t{1} << kConstBits);
  const int64_t tmp1e = (v0 - v4) * (int64_t{1} << kConstBits);
  const int64_t tmp10 = tmp0e + tmp3e, tmp13 = tmp0e - tmp3e, tmp11 = tmp1e + tmp2e, tmp12 = tmp1e - tmp2e;
  // Odd part.
  int64_t tmp0 = v7, tmp1 = v5, tmp2 = v3, tmp3 = v1;
  z1 = tmp0 + tmp3;
  int64_t z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
  const int64_t z5 = (z3 + z4) * kFix_1_175875602;
  tmp0 *= kFix_0_298631336;
  tmp1 *= kFix_2_053119869;
  tmp2 *= kFix_3_072711026;
  tmp3 *= kFix_1_501321110;
  z1 *= -kFix_0_899976223;
  z2 *= -kFix_2_562915447;
  z3 *= -kFix_1_961570560;
  z4 *= -kFix_0_390180644;
  z3 += z5;
  z4 += z5;
  tmp0 += z1 + z3;
  tmp1 += z2 + z4;
  tmp2 += z2 + z3;
  tmp3 += z1 + z4;
  out[0] = tmp10 + tmp3;
  out[7] = tmp10 - tmp3;
  out[1] = tmp11 + tmp2;
  out[6] = tmp11 - tmp2;
  out[2] = tmp12 + tmp1;
  out[5] = tmp12 - tmp1;
  out[3] = tmp13 + tmp0;
  out[4] = tmp13 - tmp0;
}

// stb's kernel signature: `data` holds dequantised coefficients in natural (row-major) order.
void islow_idct(stbi_uc* out, int out_stride, short data[64]) {
  int32_t workspace[64];
  int64_t r[8];
  for (int col = 0; col < 8; ++col) {
    const short* in = data + col;
    idct_1d(in[0], in[8], in[16], in[24], in[32], in[40], in[48], in[56], r);
    for (int i = 0; i < 8; ++i) workspace[i * 8 + col] = static_cast<int32_t>(descale(r[i], kConstBits - kPass1Bits));
  }
  for (int row = 0; row < 8; ++row) {
    const int32_t* w = workspace + row * 8;
    idct_1d(w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], r);
    stbi_uc* o = out + row * out_stride;
    for (int i = 0; i < 8; ++i) o[i] = idct_range_limit(descale(r[i], kConstBits + kPass1Bits + 3));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// libjpeg's chroma upsampling and colour conversion, applied to stb's decoded component planes.

struct Plane {
  const stbi_uc* data;
  int stride, width, height;   // width/height: the component's "downsampled" size
  const stbi_uc* row(int y) const { return data + static_cast<size_t>(std::clamp(y, 0, height - 1)) * stride; }
};

// Upsamples one component to (out_h, out_w) as libjpeg's default (do_fancy_upsampling) does.
std::vector<stbi_uc> upsample(const Plane& p, int hs, int vs, int out_w, int out_h) {
  std::vector<stbi_uc> out(static_cast<size_t>(out_w) * out_h);
  std::vector<int> colsum(p.width);
  std::vector<stbi_uc> line(static_cast<size_t>(p.width) * hs + 2);
  const int w = p.width;
  for (int y = 0; y < out_h; ++y) {
    stbi_uc* dst = &out[static_cast<size_t>(y) * out_w];
    if (hs == 1 && vs == 1) {
      std::memcpy(dst, p.row(y), out_w);
      continue;
    }
    if (hs == 2 && vs == 2 && w > 2) {
      // h2v2_fancy_upsample: vertical 3:1 mix with the row above (even rows) or below (odd rows), then
      // horizontal 3:1 mix; biases 8 and 7 alternate so rounding errors do not drift one way.
      const int k = y / 2;
      const stbi_uc* near_row = p.row(k);
      const stbi_uc* far_row = p.row(y % 2 == 0 ? k - 1 : k + 1);
      for (int c = 0; c < w; ++c) colsum[c] = near_row[c] * 3 + far_row[c];
      line[0] = static_cast<stbi_uc>((colsum[0] * 4 + 8) >> 4);
      line[1] = static_cast<stbi_uc>((colsum[0] * 3 + colsum[1] + 7) >> 4);
      for (int c = 1; c < w - 1; ++c) {
        line[2 * c] = static_cast<stbi_uc>((colsum[c] * 3 + colsum[c - 1] + 8) >> 4);
        line[2 * c + 1] = static_cast<stbi_uc>((colsum[c] * 3 + colsum[c + 1] + 7) >> 4);
      }
      line[2 * (w - 1)] = static_cast<stbi_uc>((colsum[w - 1] * 3 + colsum[w - 2] + 8) >> 4);
      line[2 * (w - 1) + 1] = static_cast<stbi_uc>((colsum[w - 1] * 4 + 7) >> 4);
    } else if (hs == 2 && vs == 1 && w > 2) {
      // h2v1_fancy_upsample: biases 1 (left neighbour) and 2 (right neighbour).
      const stbi_uc* in = p.row(y);
      line[0] = in[0];
      line[1] = static_cast<stbi_uc>((in[0] * 3 + in[1] + 2) >> 2);
      for (int c = 1; c < w - 1; ++c) {
        line[2 * c] = static_cast<stbi_uc>((in[c] * 3 + in[c - 1] + 1) >> 2);
        line[2 * c + 1] = static_cast<stbi_uc>((in[c] * 3 + in[c + 1] + 2) >> 2);
      }
      line[2 * (w - 1)] = static_cast<stbi_uc>((in[w - 1] * 3 + in[w - 2] + 1) >> 2);
      line[2 * (w - 1) + 1] = in[w - 1];
    } else if (hs == 1 && vs == 2) {
      // h1v2_fancy_upsample: vertical only, bias 1 towards the row above, 2 towards the row below.
      const int k = y / 2;
      const stbi_uc* near_row = p.row(k);
      const stbi_uc* far_row = p.row(y % 2 == 0 ? k - 1 : k + 1);
      const int bias = y % 2 == 0 ? 1 : 2;
      for (int c = 0; c < w; ++c) line[c] = static_cast<stbi_uc>((near_row[c] * 3 + far_row[c] + bias) >> 2);
    } else {
      // Any other factor (and widths <= 2, where libjpeg skips fancy upsampling): replicate.
      const stbi_uc* in = p.row(y / vs);
      for (int c = 0; c < w; ++c) std::memset(&line[static_cast<size_t>(c) * hs], in[c], hs);
    }
    std::memcpy(dst, line.data(), out_w);
  }
  return out;
}

struct YccTables {
  int cr_r[256], cb_b[256];
  int32_t cr_g[256], cb_g[256];
  YccTables() {
    // jdcolor.c build_ycc_rgb_table: 16-bit fixed point, the rounding folded into the tables.
    constexpr int kScaleBits = 16;
    constexpr int32_t kOneHalf = int32_t{1} << (kScaleBits - 1);
    auto fix = [](double x) { return static_cast<int32_t>(x * (1 << kScaleBits) + 0.5); };
    for (int i = 0; i < 256; ++i) {
      const int32_t x = i - 128;
      cr_r[i] = (fix(1.40200) * x + kOneHalf) >> kScaleBits;
      cb_b[i] = (fix(1.77200) * x + kOneHalf) >> kScaleBits;
      cr_g[i] = -fix(0.71414) * x;
      cb_g[i] = -fix(0.34414) * x + kOneHalf;
    }
  }
};

inline stbi_uc clamp255(int v) { return static_cast<stbi_uc>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

// JPEGs with 1 or 3 components, decoded as libjpeg does. Returns false (nothing decoded) for 4-component files,
// which the caller hands to stb as a whole.
bool decode_jpeg_like_libjpeg(const uint8_t* bytes, int len, const std::string& source, RgbImage* out) {
  stbi__context ctx;
  stbi__start_mem(&ctx, bytes, len);
  auto jpeg = std::unique_ptr<stbi__jpeg, decltype(&std::free)>(
      static_cast<stbi__jpeg*>(std::calloc(1, sizeof(stbi__jpeg))), &std::free);
  if (!jpeg) throw DataError(fmt::format("{}: cannot decode image: out of memory", source));
  stbi__jpeg* z = jpeg.get();
  z->s = &ctx;
  stbi__setup_jpeg(z);
  z->idct_block_kernel = islow_idct;
  // Decodes all scans into per-component planes (stb's format, still YCbCr, still subsampled).
  if (!stbi__decode_jpeg_image(z)) {
    stbi__cleanup_jpeg(z);
    throw DataError(fmt::format("{}: cannot decode image: {} (corrupt or truncated file?)", source,
                                stbi_failure_reason()));
  }
  const int n = ctx.img_n;
  if (n != 1 && n != 3) {
    stbi__cleanup_jpeg(z);
    return false;
  }
  const int width = static_cast<int>(ctx.img_x), height = static_cast<int>(ctx.img_y);
  std::vector<stbi_uc> planes[3];
  for (int k = 0; k < n; ++k) {
    const Plane p{z->img_comp[k].data, z->img_comp[k].w2, z->img_comp[k].x, z->img_comp[k].y};
    planes[k] = upsample(p, z->img_h_max / z->img_comp[k].h, z->img_v_max / z->img_comp[k].v, width, height);
  }
  // stb's rule for files that store RGB rather than YCbCr (Adobe transform 0 without JFIF, or ids 'R','G','B').
  const bool is_rgb = n == 3 && (z->rgb == 3 || (z->app14_color_transform == 0 && !z->jfif));
  stbi__cleanup_jpeg(z);

  out->width = width;
  out->height = height;
  out->pixels.resize(static_cast<size_t>(width) * height * 3);
  static const YccTables t;
  const size_t count = static_cast<size_t>(width) * height;
  for (size_t i = 0; i < count; ++i) {
    stbi_uc* d = &out->pixels[i * 3];
    if (n == 1) {
      d[0] = d[1] = d[2] = planes[0][i];
    } else if (is_rgb) {
      d[0] = planes[0][i];
      d[1] = planes[1][i];
      d[2] = planes[2][i];
    } else {
      const int y = planes[0][i], cb = planes[1][i], cr = planes[2][i];
      d[0] = clamp255(y + t.cr_r[cr]);
      d[1] = clamp255(y + ((t.cb_g[cb] + t.cr_g[cr]) >> 16));
      d[2] = clamp255(y + t.cb_b[cb]);
    }
  }
  return true;
}

enum class JpegEnd { kComplete, kTruncated, kUnknown };

// stb_image decodes a truncated JPEG without complaint (the missing rows come out grey), whereas PIL raises
// "image file is truncated". So walk the marker structure and check that an EOI marker is reached before the
// data runs out. Entropy-coded data can only contain 0xFF followed by 0x00 (stuffing) or RSTn, so any other
// marker there ends the scan. kUnknown means the structure is too odd to judge; stb then decides.
JpegEnd check_jpeg_end(const uint8_t* p, size_t n) {
  size_t pos = 2;   // after SOI
  while (true) {
    // Find the next marker: 0xFF, possibly repeated (fill bytes), then a non-0xFF byte. libjpeg skips stray
    // bytes before a marker with a warning, so we do too.
    while (pos < n && p[pos] != 0xFF) ++pos;
    while (pos < n && p[pos] == 0xFF) ++pos;
    if (pos >= n) return JpegEnd::kTruncated;
    const uint8_t marker = p[pos++];
    if (marker == 0xD9) return JpegEnd::kComplete;   // EOI
    if (marker == 0x00) return JpegEnd::kUnknown;    // stuffed zero outside a scan: not a structure we know
    if ((marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) continue;   // RSTn, TEM: no length
    if (pos + 2 > n) return JpegEnd::kTruncated;
    const size_t length = (static_cast<size_t>(p[pos]) << 8) | p[pos + 1];
    if (length < 2) return JpegEnd::kUnknown;
    if (pos + length > n) return JpegEnd::kTruncated;
    pos += length;
    if (marker == 0xDA) {   // SOS: skip the entropy-coded segment up to the next real marker
      while (true) {
        while (pos < n && p[pos] != 0xFF) ++pos;
        if (pos + 1 >= n) return JpegEnd::kTruncated;
        const uint8_t next = p[pos + 1];
        if (next == 0x00 || (next >= 0xD0 && next <= 0xD7) || next == 0xFF) {
          pos += (next == 0xFF) ? 1 : 2;
          continue;
        }
        break;   // a marker: back to the outer loop, which reads it
      }
    }
  }
}

}  // namespace

RgbImage decode_rgb(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size == 0) throw DataError(fmt::format("{}: cannot decode image: the file is empty", source));
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw DataError(fmt::format("{}: cannot decode image: {} bytes is more than stb_image reads", source, size));
  }
  const int len = static_cast<int>(size);
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes, len, &width, &height, &channels)) {
    throw DataError(fmt::format("{}: cannot decode image: {} (supported formats: JPEG, PNG, BMP, GIF)", source,
                                stbi_failure_reason()));
  }
  if (static_cast<int64_t>(width) * height > kMaxPixels) {
    throw DataError(fmt::format("{}: image is {}x{} pixels, more than the {} PIL accepts (decompression bomb?)", source,
                                width, height, kMaxPixels));
  }

  const bool is_jpeg = size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
  if (is_jpeg) {
    if (check_jpeg_end(bytes, size) == JpegEnd::kTruncated) {
      throw DataError(fmt::format("{}: cannot decode image: JPEG data ends before the end-of-image marker "
                                  "(truncated file; PIL refuses it too)",
                                  source));
    }
    RgbImage out;
    if (decode_jpeg_like_libjpeg(bytes, len, source, &out)) return out;
  }

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

RgbImage load_rgb(const std::string& path) {
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
