// JPEG decoding with libjpeg-turbo, the library Pillow decodes with, set up as Pillow sets it up (its
// JpegDecode.c): libjpeg's defaults (islow integer IDCT, fancy upsampling, libjpeg's own guess of the colour space)
// with the output colour space of PIL's mode: RGB for 3 components, grey for 1, CMYK for 4. So the pixels are
// Pillow's bit for bit (test_image checks every chroma sampling, progressive and grey files against libjpeg's own
// decode and a 4:2:0 photo against the Python reference; measured against Pillow 9.4: every JPEG the tests use).
// What Pillow does after libjpeg is done here too: grey is replicated into R, G, B, and CMYK (or YCCK) files go
// through its "CMYK;I" raw mode and convert('RGB') formula. EXIF orientation is not applied (Image.open does not).
#include <csetjmp>
#include <cstdio>   // jpeglib.h uses FILE and size_t without including their headers
#include <utility>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>   // the message codes (JWRN_JPEG_EOF)

#include <fmt/format.h>

#include "core/api/error.h"
#include "core/lib/image/decoders.h"

namespace mmr::image::detail {
namespace {

// libjpeg reports a fatal error by calling error_exit, which must not return (the default one calls exit()).
// Ours keeps the message and longjmps back to the guarded call (libjpeg_call), which the C++ side turns into a
// DataError; no C++ exception crosses libjpeg's C frames.
struct ErrorManager {
  jpeg_error_mgr pub;   // first, so that cinfo->err points at the whole struct
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool ran_out_of_data;   // libjpeg wanted bytes past the end of the file
};

ErrorManager* errors_of(j_common_ptr cinfo) { return reinterpret_cast<ErrorManager*>(cinfo->err); }

[[noreturn]] void on_fatal_error(j_common_ptr cinfo) {
  ErrorManager* err = errors_of(cinfo);
  err->pub.format_message(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) and traces (> 0) are ignored, as in PIL, except running out of data. PIL feeds libjpeg from
// a suspending source and raises "image file is truncated" when libjpeg asks for bytes past the end of the file
// before the last row is out; with jpeg_mem_src that same request is this warning (after which libjpeg would
// pad with an end-of-image marker and return grey rows).
void on_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) errors_of(cinfo)->ran_out_of_data = true;
}

// One decompression; the libjpeg object is freed with it however decoding ends (jpeg_destroy_decompress is safe on
// the zeroed struct too, if jpeg_create_decompress never ran).
struct Decompressor {
  jpeg_decompress_struct cinfo{};
  ErrorManager err{};
  Decompressor() {
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_fatal_error;
    err.pub.emit_message = on_message;
  }
  ~Decompressor() { jpeg_destroy_decompress(&cinfo); }
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
};

// Runs `fn`, which calls into libjpeg; false if libjpeg raised a fatal error. `fn` must own no object with a
// destructor, since the longjmp skips its frame.
template <typename Fn>
bool libjpeg_call(Decompressor& d, Fn&& fn) {
  if (setjmp(d.err.jump) != 0) return false;
  fn();
  return true;
}

[[noreturn]] void fail(const Decompressor& d, const std::string& source) {
  if (d.err.ran_out_of_data) {
    throw DataError(fmt::format("{}: cannot decode image: the JPEG data ends early (truncated file; PIL refuses it "
                                "too)",
                                source));
  }
  throw DataError(fmt::format("{}: cannot decode image: JPEG: {} (corrupt file?)", source, d.err.message));
}

// PIL's CMYK: the "CMYK;I" raw mode inverts libjpeg's samples (Adobe's convention), then convert('RGB') (Convert.c
// cmyk2rgb) computes nk - ink * nk / 255 with nk = 255 - K, in MULDIV255's rounding. With the inversion folded in,
// ink = 255 - sample and nk = the K sample. The result lies in [0, nk], so no clamping is needed.
uint8_t cmyk_to_rgb_channel(int sample, int k_sample) {
  const int t = (255 - sample) * k_sample + 128;
  return static_cast<uint8_t>(k_sample - (((t >> 8) + t) >> 8));
}

// libjpeg's output samples (1, 3 or 4 per pixel) to RGB as PIL's convert('RGB') gives them.
void samples_to_rgb(std::vector<uint8_t> samples, int channels, RgbImage& out) {
  if (channels == 3) {
    out.pixels = std::move(samples);
    return;
  }
  const size_t count = static_cast<size_t>(out.width) * out.height;
  out.pixels.resize(count * 3);
  for (size_t i = 0; i < count; ++i) {
    uint8_t* d = &out.pixels[i * 3];
    if (channels == 1) {
      d[0] = d[1] = d[2] = samples[i];
    } else {
      const uint8_t* s = &samples[i * 4];
      for (int c = 0; c < 3; ++c) d[c] = cmyk_to_rgb_channel(s[c], s[3]);
    }
  }
}

// Reads the file's header into `d` (its size, components and colour space); a DataError naming `source` if libjpeg
// cannot.
void read_header(Decompressor& d, const uint8_t* bytes, size_t size, const std::string& source) {
  if (!libjpeg_call(d, [&] {
        jpeg_create_decompress(&d.cinfo);
        jpeg_mem_src(&d.cinfo, bytes, size);
        jpeg_read_header(&d.cinfo, TRUE);
      })) {
    fail(d, source);
  }
}

}  // namespace

ImageSize jpeg_size(const uint8_t* bytes, size_t size, const std::string& source) {
  Decompressor d;
  read_header(d, bytes, size, source);
  return {d.cinfo.image_width, d.cinfo.image_height};
}

RgbImage decode_jpeg(const uint8_t* bytes, size_t size, const std::string& source) {
  Decompressor d;
  read_header(d, bytes, size, source);
  check_pixel_count(d.cinfo.image_width, d.cinfo.image_height, source);
  const int components = d.cinfo.num_components;
  if (components != 1 && components != 3 && components != 4) {
    throw DataError(fmt::format("{}: cannot decode image: a JPEG with {} colour components (PIL reads 1: grey, "
                                "3: YCbCr or RGB, 4: CMYK or YCCK)",
                                source, components));
  }
  d.cinfo.out_color_space = components == 1 ? JCS_GRAYSCALE : (components == 3 ? JCS_RGB : JCS_CMYK);
  if (!libjpeg_call(d, [&] { jpeg_start_decompress(&d.cinfo); })) fail(d, source);

  RgbImage out;
  out.width = static_cast<int>(d.cinfo.output_width);
  out.height = static_cast<int>(d.cinfo.output_height);
  const int channels = d.cinfo.output_components;
  const size_t row_size = static_cast<size_t>(out.width) * channels;
  std::vector<uint8_t> samples(row_size * out.height);
  if (!libjpeg_call(d, [&] {
        while (d.cinfo.output_scanline < d.cinfo.output_height) {
          JSAMPROW row = &samples[d.cinfo.output_scanline * row_size];
          jpeg_read_scanlines(&d.cinfo, &row, 1);
        }
      })) {
    fail(d, source);
  }
  if (d.err.ran_out_of_data) fail(d, source);
  // PIL finishes too, so a bad marker after the last row is an error there as well; running out of data here is
  // not (PIL's decoder stops asking once every row is out).
  if (!libjpeg_call(d, [&] { jpeg_finish_decompress(&d.cinfo); })) fail(d, source);
  samples_to_rgb(std::move(samples), channels, out);
  return out;
}

}  // namespace mmr::image::detail
