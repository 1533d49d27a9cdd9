// Tests for core/image: the LLaVA-1.5 preprocessing against the Python reference (PIL + LLaVA's expand2square,
// tests/data/tiny-llava/expected/pixel_values.safetensors), the decoders (libjpeg-turbo, libwebp, stb_image)
// against PIL's and libjpeg's own decodes, and their errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <webp/encode.h>
#include <webp/types.h>

#include "core/api/error.h"
#include "core/lib/image/image.h"
#include "core/lib/safetensors/safetensors.h"

namespace fs = std::filesystem;
using namespace mmr::image;

namespace {

const std::string kTiny = std::string(MMR_TEST_DATA_DIR) + "/tiny-llava";
const std::string kImages = kTiny + "/images";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("mmr_img_" + std::string(test->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                             static_cast<std::streamsize>(bytes.size()));
    return p;
  }

 private:
  fs::path path_;
};

template <typename Fn>
void expect_data_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected mmr::DataError";
  } catch (const mmr::DataError& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
  }
}

struct Comparison {
  double max_abs_error = 0;
  int max_grey_levels = 0;   // the largest uint8 difference implied by the float difference
  size_t values_off = 0;     // values further than 1e-5 from the reference
};

// Compares our pixel values with the reference's; the uint8 difference is |error| * std * 255 rounded.
Comparison compare_with_reference(const std::string& image_file) {
  auto reference = mmr::safetensors::SafetensorsFile::open(kTiny + "/expected/pixel_values.safetensors");
  std::string key = image_file;
  std::replace(key.begin(), key.end(), '.', '_');
  const PreprocessConfig config = PreprocessConfig::from_json_file(kTiny + "/model/preprocessor_config.json");
  reference.expect_shape(key, {3, config.crop_height, config.crop_width});
  const std::vector<float> expected = reference.to_float32(key);
  const std::vector<float> ours = preprocess_file(kImages + "/" + image_file, config);
  EXPECT_EQ(ours.size(), expected.size());
  Comparison c;
  const size_t plane = expected.size() / 3;
  for (size_t i = 0; i < std::min(ours.size(), expected.size()); ++i) {
    const double err = std::fabs(static_cast<double>(ours[i]) - expected[i]);
    c.max_abs_error = std::max(c.max_abs_error, err);
    const int levels = static_cast<int>(std::lround(err * config.image_std[i / plane] * 255.0));
    c.max_grey_levels = std::max(c.max_grey_levels, levels);
    if (err > 1e-5) ++c.values_off;
  }
  std::cout << image_file << ": max abs error " << c.max_abs_error << " (" << c.max_grey_levels
            << " grey levels), values off by more than 1e-5: " << c.values_off << " of " << expected.size() << "\n";
  ::testing::Test::RecordProperty(key + "_max_abs_error", std::to_string(c.max_abs_error));
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Against the Python reference

// PNG decoding is lossless and the resize is PIL's own integer arithmetic, so only float rounding remains.
class ImageMatchesPythonReferencePng : public ::testing::TestWithParam<std::string> {};

TEST_P(ImageMatchesPythonReferencePng, ExactUint8AndFloatRounding) {
  const Comparison c = compare_with_reference(GetParam());
  EXPECT_EQ(c.max_grey_levels, 0);
  EXPECT_LE(c.max_abs_error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ImageMatchesPythonReferencePng,
                         ::testing::Values("wide.png", "square_big.png", "gray.png", "rgba.png", "small.png"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

TEST(ImageMatchesPythonReference, JpegExactlyAsLibjpegDecodesIt) {
  // The issue allows 0.035 absolute for JPEG. stb_image's own IDCT, upsampling and colour conversion land 3 grey
  // levels (0.044) away on this 4:2:0 file; decoded by libjpeg-turbo as PIL sets it up (jpeg.cpp) it is exact.
  const Comparison c = compare_with_reference("tall.jpg");
  EXPECT_LE(c.max_abs_error, 0.035);
  EXPECT_EQ(c.max_grey_levels, 0);
  EXPECT_LE(c.max_abs_error, 1e-6);
}

TEST(ImageDecode, JpegMatchesLibjpegInEverySampling) {
  // Reference decodes by libjpeg-turbo itself (core/lib/image/tests/data/README.md): odd sizes, so the edge columns
  // and rows of the chroma upsampling are exercised.
  const std::string dir = MMR_IMAGE_TEST_DATA_DIR;
  auto reference = mmr::safetensors::SafetensorsFile::open(dir + "/libjpeg_decoded.safetensors");
  for (const std::string key : {"h1v1", "h2v1", "h1v2", "h2v2", "h2v2_progressive", "gray"}) {
    const RgbImage img = load_rgb(dir + "/libjpeg_" + key + ".jpg");
    reference.expect_shape(key, {img.height, img.width, 3});
    const std::vector<int64_t> expected = reference.to_int64(key);
    int max_diff = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(static_cast<int>(img.pixels[i]) - static_cast<int>(expected[i])));
    }
    EXPECT_EQ(max_diff, 0) << key;
  }
}

TEST(ImageDecode, CmykJpegAsPilConvertsIt) {
  // Pillow's own decode (tests/data/README.md): its "CMYK;I" raw mode and cmyk2rgb rounding, to the grey level.
  const std::string dir = MMR_IMAGE_TEST_DATA_DIR;
  const RgbImage img = load_rgb(dir + "/pil_cmyk.jpg");
  const std::vector<uint8_t> ppm = read_bytes(dir + "/pil_cmyk_rgb.ppm");
  const std::string header = "P6\n37 29\n255\n";
  ASSERT_EQ(std::string(ppm.begin(), ppm.begin() + header.size()), header);
  ASSERT_EQ(img.width, 37);
  ASSERT_EQ(img.height, 29);
  EXPECT_EQ(img.pixels, std::vector<uint8_t>(ppm.begin() + header.size(), ppm.end()));
}

// ---------------------------------------------------------------------------------------------------------------
// Pieces of the pipeline

TEST(ImagePreprocess, ConfigFromFixtureJson) {
  const PreprocessConfig c = PreprocessConfig::from_json_file(kTiny + "/model/preprocessor_config.json");
  EXPECT_EQ(c.crop_width, 336);
  EXPECT_EQ(c.crop_height, 336);
  EXPECT_EQ(c.shortest_edge, 336);
  EXPECT_EQ(c.resample, ResampleFilter::kBicubic);
  EXPECT_EQ(c.image_mean[1], 0.4578275);
  EXPECT_EQ(c.image_std[2], 0.27577711);
  EXPECT_EQ(c.aspect_mode, AspectMode::kPad);
  // LLaVA's background: tuple(int(x * 255) for x in image_mean).
  EXPECT_EQ(c.pad_color(), (std::array<uint8_t, 3>{122, 116, 104}));
}

TEST(ImagePreprocess, BadConfigNamesFileKeyExpectedAndFound) {
  expect_data_error([] { PreprocessConfig::from_json_text(R"({"resample": 0})", "pp.json"); },
                    {"pp.json: key 'resample'", "BICUBIC", "found 0", "NEAREST is not supported"});
  expect_data_error([] { PreprocessConfig::from_json_text(R"({"image_std": [0.2, 0.3]})", "pp.json"); },
                    {"pp.json: key 'image_std'", "3 numbers", "[0.2,0.3]"});
  expect_data_error([] { PreprocessConfig::from_json_text(R"({"crop_size": {"height": 336}})", "pp.json"); },
                    {"pp.json: key 'crop_size'", "height", "width"});
  expect_data_error([] { PreprocessConfig::from_json_text(R"({"image_aspect_ratio": "anyres"})", "pp.json"); },
                    {"pp.json: key 'image_aspect_ratio'", "'anyres'", "pad"});
  expect_data_error([] { PreprocessConfig::from_json_text("{", "pp.json"); }, {"pp.json: not valid JSON"});
}

TEST(ImagePreprocess, OutputIsChannelPlanesNormalisedWithMeanAndStd) {
  // A 2x1 image, pure black and pure white, stretched to 4x4 with BOX: each output column copies one input.
  RgbImage img{2, 1, {0, 0, 0, 255, 255, 255}};
  PreprocessConfig c;
  c.crop_width = 4;
  c.crop_height = 4;
  c.aspect_mode = AspectMode::kResize;
  c.resample = ResampleFilter::kBox;
  const std::vector<float> v = preprocess(img, c);
  ASSERT_EQ(v.size(), 3u * 4 * 4);
  for (int ch = 0; ch < 3; ++ch) {
    const float black = static_cast<float>((0.0 - c.image_mean[ch]) / c.image_std[ch]);
    const float white = static_cast<float>((1.0 - c.image_mean[ch]) / c.image_std[ch]);
    for (int y = 0; y < 4; ++y) {
      EXPECT_EQ(v[ch * 16 + y * 4 + 0], black);
      EXPECT_EQ(v[ch * 16 + y * 4 + 1], black);
      EXPECT_EQ(v[ch * 16 + y * 4 + 2], white);
      EXPECT_EQ(v[ch * 16 + y * 4 + 3], white);
    }
  }
}

TEST(ImageGeometry, ExpandToSquareCentresWideAndTallAsLlava) {
  const std::array<uint8_t, 3> bg = {122, 116, 104};
  // Wide 3x1 -> 3x3, pasted at (0, (3 - 1) // 2) = row 1.
  RgbImage wide{3, 1, {1, 1, 1, 2, 2, 2, 3, 3, 3}};
  RgbImage sq = expand_to_square(wide, bg);
  ASSERT_EQ(sq.width, 3);
  ASSERT_EQ(sq.height, 3);
  EXPECT_EQ(sq.at(0, 0)[0], 122);
  EXPECT_EQ(sq.at(2, 1)[0], 3);
  EXPECT_EQ(sq.at(1, 2)[2], 104);
  // Tall 2x5 -> 5x5, pasted at ((5 - 2) // 2, 0) = column 1 (the odd pixel of margin goes to the right).
  RgbImage tall{2, 5, std::vector<uint8_t>(2 * 5 * 3, 7)};
  sq = expand_to_square(tall, bg);
  ASSERT_EQ(sq.width, 5);
  for (int y = 0; y < 5; ++y) {
    EXPECT_EQ(sq.at(0, y)[1], 116);
    EXPECT_EQ(sq.at(1, y)[1], 7);
    EXPECT_EQ(sq.at(2, y)[1], 7);
    EXPECT_EQ(sq.at(3, y)[1], 116);
    EXPECT_EQ(sq.at(4, y)[1], 116);
  }
}

TEST(ImageResize, DownscaleWidensTheFilter) {
  // Antialiasing: shrinking a 1-pixel-wide white line on black by 4 spreads it over the output instead of
  // dropping it (a plain 4-tap bicubic sampling at the output centres would miss it or keep it at full height).
  RgbImage img{16, 1, std::vector<uint8_t>(16 * 3, 0)};
  for (int c = 0; c < 3; ++c) img.pixels[7 * 3 + c] = 255;
  const RgbImage out = resize(img, 4, 1, ResampleFilter::kBicubic);
  ASSERT_EQ(out.width, 4);
  int lit = 0;
  for (int x = 0; x < 4; ++x) lit += out.at(x, 0)[0] > 0;
  EXPECT_GE(lit, 2);
  EXPECT_LT(out.at(1, 0)[0], 128);   // 255 spread over ~4 input pixels' worth of weight
}

TEST(ImageResize, SameSizeIsACopy) {
  RgbImage img{3, 2, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}};
  const RgbImage out = resize(img, 3, 2, ResampleFilter::kBicubic);
  EXPECT_EQ(out.pixels, img.pixels);
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding

TEST(ImageDecode, GrayscaleIsReplicatedIntoRgb) {
  const RgbImage img = load_rgb(kImages + "/gray.png");
  EXPECT_EQ(img.width, 90);
  EXPECT_EQ(img.height, 90);
  bool varied = false;
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    ASSERT_EQ(img.pixels[i], img.pixels[i + 1]);
    ASSERT_EQ(img.pixels[i], img.pixels[i + 2]);
    varied |= img.pixels[i] != img.pixels[0];
  }
  EXPECT_TRUE(varied);
}

TEST(ImageDecode, SizesOfFixtureImages) {
  const std::vector<std::tuple<std::string, int, int>> sizes = {
      {"wide.png", 200, 120}, {"tall.jpg", 130, 260}, {"rgba.png", 160, 100}, {"small.png", 40, 30}};
  for (const auto& [file, w, h] : sizes) {
    const RgbImage img = load_rgb(kImages + "/" + file);
    EXPECT_EQ(img.width, w) << file;
    EXPECT_EQ(img.height, h) << file;
    EXPECT_EQ(img.pixels.size(), static_cast<size_t>(w) * h * 3) << file;
  }
}

TEST(ImageDecode, MissingFileNamesPath) {
  expect_data_error([] { load_rgb(kImages + "/nope.png"); }, {kImages + "/nope.png", "no such file"});
}

TEST(ImageDecode, TruncatedPngNamesFileAndReason) {
  TempDir dir;
  std::vector<uint8_t> bytes = read_bytes(kImages + "/wide.png");
  bytes.resize(bytes.size() / 2);
  const std::string path = dir.write("cut.png", bytes);
  expect_data_error([&] { load_rgb(path); }, {path, "cannot decode image"});
}

TEST(ImageDecode, TruncatedJpegIsRefusedAsPilDoes) {
  TempDir dir;
  std::vector<uint8_t> bytes = read_bytes(kImages + "/tall.jpg");
  bytes.resize(bytes.size() * 2 / 3);
  const std::string path = dir.write("cut.jpg", bytes);
  expect_data_error([&] { load_rgb(path); }, {path, "truncated"});
}

TEST(ImageDecode, JpegEndingJustBeforeItsEndMarkerIsTruncatedAsPilSays) {
  // Measured against Pillow 9.4: without its last two bytes (the EOI marker) tall.jpg is "image file is
  // truncated" there too, since libjpeg asks for more bytes before its last row is out.
  TempDir dir;
  std::vector<uint8_t> bytes = read_bytes(kImages + "/tall.jpg");
  ASSERT_EQ(bytes[bytes.size() - 2], 0xFF);
  ASSERT_EQ(bytes[bytes.size() - 1], 0xD9);
  bytes.resize(bytes.size() - 2);
  const std::string path = dir.write("no_eoi.jpg", bytes);
  expect_data_error([&] { load_rgb(path); }, {path, "truncated"});
}

TEST(ImageDecode, CorruptJpegIsADataErrorNamingLibjpegsReason) {
  // libjpeg's default error handler would exit() the process; ours turns its message into a DataError.
  TempDir dir;
  std::vector<uint8_t> bytes = read_bytes(kImages + "/tall.jpg");
  std::vector<uint8_t> bad_marker = bytes;
  ASSERT_EQ(bad_marker[3], 0xE0);
  bad_marker[3] = 0x1F;   // the APP0 marker after SOI becomes 0xFF1F, which JPEG does not define (PIL refuses it too)
  const std::string path = dir.write("bad_marker.jpg", bad_marker);
  expect_data_error([&] { load_rgb(path); }, {path, "cannot decode image: JPEG: ", "corrupt"});
  // Only the first three bytes of a JPEG: the check's magic, nothing after it.
  const std::string stub = dir.write("stub.jpg", std::vector<uint8_t>(bytes.begin(), bytes.begin() + 3));
  expect_data_error([&] { load_rgb(stub); }, {stub, "truncated"});
}

namespace {

// A 3 x 2 24-bit BMP as Windows writes it: BITMAPINFOHEADER, rows bottom-up, BGR, each padded to 4 bytes (12).
std::vector<uint8_t> bmp_3x2() {
  std::vector<uint8_t> b = {'B', 'M', 78, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0,   // file size 78, pixels at 54
                            40, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 24, 0,  // 3 x 2, one plane, 24 bits
                            0, 0, 0, 0, 24, 0, 0, 0, 0x13, 0x0B, 0, 0, 0x13, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<uint8_t> rows = {30, 20, 10, 60, 50, 40, 90, 80, 70, 0, 0, 0,    // bottom row
                                     0, 0, 255, 0, 255, 0, 255, 0, 0, 0, 0, 0};   // top row: red, green, blue
  b.insert(b.end(), rows.begin(), rows.end());
  return b;
}

}  // namespace

TEST(ImageDecode, BmpDecodesTopRowFirstAndATruncatedOneIsRefused) {
  const std::vector<uint8_t> bmp = bmp_3x2();
  const RgbImage img = decode_rgb(bmp.data(), bmp.size(), "ok.bmp");
  ASSERT_EQ(img.width, 3);
  ASSERT_EQ(img.height, 2);
  EXPECT_EQ(img.pixels, (std::vector<uint8_t>{255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90}));
  // One byte short of the last row's padding: stb would read it as zero; PIL calls the file truncated, so do we.
  expect_data_error([&] { decode_rgb(bmp.data(), bmp.size() - 1, "short.bmp"); },
                    {"short.bmp", "truncated BMP", "3x2 pixels at 24 bits need 2 rows of 12 bytes from byte 54, the file has 77"});
  // Found by fuzz/fuzz_image_bmp: a header claiming 7 x 16,711,685 pixels in a 78-byte file decoded for seconds
  // into zeros; it is refused before any pixel is made.
  std::vector<uint8_t> tall = bmp;
  tall[18] = 7;     // width 7
  tall[22] = 0x05;  // height 0x00FF0005 = 16711685
  tall[24] = 0xFF;
  expect_data_error([&] { decode_rgb(tall.data(), tall.size(), "tall.bmp"); },
                    {"tall.bmp", "truncated BMP", "7x16711685 pixels"});
  // Found next: the same with 65312 bits per pixel, which stb reads as well.
  tall[28] = 0x20;
  tall[29] = 0xFF;
  expect_data_error([&] { decode_rgb(tall.data(), tall.size(), "wide_pixels.bmp"); },
                    {"wide_pixels.bmp", "truncated BMP", "7x16711685 pixels at 65312 bits"});
  // Found next, the fuzzer's 49 bytes: rows x bytes per row overflowed the size computation of that very check.
  const std::vector<uint8_t> overflow = {
      0x42, 0x4D, 0xAE, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x36, 0x00, 0x00, 0x00, 0x28, 0x00,
      0x00, 0x00, 0x07, 0x00, 0x00, 0x16, 0x00, 0x00, 0x00, 0xC9, 0x01, 0x00, 0x4D, 0xFF, 0xFF, 0xFF,
      0xFF, 0xFF, 0xFF, 0xFF, 0x42, 0x00, 0x00, 0x00, 0x49, 0x49, 0x2A, 0x00, 0x00, 0xFF, 0x00, 0x7C, 0x00
  };
  expect_data_error([&] { decode_rgb(overflow.data(), overflow.size(), "overflow.bmp"); },
                    {"overflow.bmp", "truncated BMP"});
}

// Found by fuzz/fuzz_image_png: a 167-byte PNG whose IDAT chunk stated 1.5 GB made stb allocate 2 GiB before
// finding the data missing. Chunks must fit in the file, and a header claiming more pixels than the file can hold
// at deflate's best ratio is refused before decoding.
TEST(ImageDecode, PngClaimingMoreThanItsBytesCanHoldIsRefusedBeforeDecoding) {
  std::vector<uint8_t> png = read_bytes(kImages + "/small.png");
  ASSERT_NO_THROW(decode_rgb(png.data(), png.size(), "small.png"));
  ASSERT_EQ(std::string(png.begin() + 12, png.begin() + 16), "IHDR");
  // The chunk after IHDR (IDAT, at byte 33, 0x94E bytes) stating 0x6000094E bytes.
  std::vector<uint8_t> long_chunk = png;
  long_chunk[33] = 0x60;
  expect_data_error([&] { decode_rgb(long_chunk.data(), long_chunk.size(), "chunk.png"); },
                    {"chunk.png", "truncated PNG: chunk 'IDAT' at byte 33 states 1610615118 bytes",
                     "the file has 2398 after it"});
  const uint8_t dims[8] = {0, 0, 0x32, 0xC8, 0, 0, 0x32, 0xC8};  // 13000 x 13000, big-endian
  std::copy(dims, dims + 8, png.begin() + 16);
  expect_data_error([&] { decode_rgb(png.data(), png.size(), "bomb.png"); },
                    {"bomb.png", "truncated or corrupt PNG: its 13000x13000 pixels need",
                     "more than the 2439-byte file"});
}

TEST(ImageDecode, TextFileRenamedJpgNamesFileAndReason) {
  TempDir dir;
  const std::string text = "this is not an image, just text\n";
  const std::string path = dir.write("notes.jpg", std::vector<uint8_t>(text.begin(), text.end()));
  expect_data_error([&] { load_rgb(path); },
                    {path, "cannot decode image", "unknown image type", "JPEG, PNG, GIF, BMP or WebP"});
}

TEST(ImageDecode, TiffIsRefusedByName) {
  TempDir dir;
  for (const std::string& magic : {std::string("II*\0", 4), std::string("MM\0*", 4)}) {
    const std::string text = magic + std::string(60, '\0');
    const std::string path = dir.write("scan.tif", std::vector<uint8_t>(text.begin(), text.end()));
    expect_data_error([&] { load_rgb(path); }, {path, "TIFF is not supported", "JPEG, PNG, GIF, BMP or WebP"});
  }
}

// A w x h RGBA pattern whose alpha varies (never 0, where an encoder may drop the colour) and whose colour does not
// follow the alpha, so compositing would show.
std::vector<uint8_t> rgba_pattern(int w, int h) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 4);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 4];
      p[0] = static_cast<uint8_t>(x * 9 + y);
      p[1] = static_cast<uint8_t>(y * 13 + 7);
      p[2] = static_cast<uint8_t>((x ^ y) * 5);
      p[3] = static_cast<uint8_t>(1 + (x * 31 + y * 17) % 255);
    }
  }
  return px;
}

// Lossless WebP made here with libwebp's encoder; lossless, so the decoded pixels must be the pattern's.
std::vector<uint8_t> encode_lossless_webp(const std::vector<uint8_t>& rgba, int w, int h) {
  uint8_t* out = nullptr;
  const size_t size = WebPEncodeLosslessRGBA(rgba.data(), w, h, w * 4, &out);
  EXPECT_GT(size, 0u);
  std::vector<uint8_t> bytes(out, out + size);
  WebPFree(out);
  return bytes;
}

TEST(ImageDecode, LosslessWebpGivesItsPixelsWithAlphaDroppedAsForPng) {
  // As for rgba.png (PIL's convert('RGB') of RGBA): alpha is dropped, not composited onto a background.
  const int w = 23, h = 17;
  const std::vector<uint8_t> rgba = rgba_pattern(w, h);
  TempDir dir;
  const std::string path = dir.write("pattern.webp", encode_lossless_webp(rgba, w, h));
  const RgbImage img = load_rgb(path);
  ASSERT_EQ(img.width, w);
  ASSERT_EQ(img.height, h);
  size_t differ = 0;
  for (size_t i = 0; i < static_cast<size_t>(w) * h; ++i)
    for (int c = 0; c < 3; ++c) differ += img.pixels[i * 3 + c] != rgba[i * 4 + c];
  EXPECT_EQ(differ, 0u);
}

TEST(ImageDecode, WebpOfAFixturePngPreprocessesLikeThePng) {
  // The same pixels through the whole LLaVA pipeline: the WebP copy of wide.png gives the PNG's model input.
  const RgbImage png = load_rgb(kImages + "/wide.png");
  std::vector<uint8_t> rgba;
  for (size_t i = 0; i < png.pixels.size(); i += 3) rgba.insert(rgba.end(), {png.pixels[i], png.pixels[i + 1], png.pixels[i + 2], 255});
  TempDir dir;
  const std::string path = dir.write("wide.webp", encode_lossless_webp(rgba, png.width, png.height));
  const PreprocessConfig config = PreprocessConfig::from_json_file(kTiny + "/model/preprocessor_config.json");
  EXPECT_EQ(preprocess_file(path, config), preprocess_file(kImages + "/wide.png", config));
}

TEST(ImageDecode, TruncatedOrCorruptWebpIsADataError) {
  const std::vector<uint8_t> good = encode_lossless_webp(rgba_pattern(40, 30), 40, 30);
  TempDir dir;
  for (const size_t keep : {size_t{12}, size_t{30}, good.size() / 2, good.size() - 1}) {
    const std::string path = dir.write("cut.webp", std::vector<uint8_t>(good.begin(), good.begin() + keep));
    expect_data_error([&] { load_rgb(path); }, {path, "cannot decode image", "WebP", "corrupt or truncated"});
  }
  std::vector<uint8_t> scrambled = good;
  for (size_t i = 40; i < scrambled.size(); i += 7) scrambled[i] ^= 0x5A;
  const std::string path = dir.write("scrambled.webp", scrambled);
  expect_data_error([&] { load_rgb(path); }, {path, "cannot decode image", "WebP"});
}

TEST(ImageDecode, EmptyFileNamesPath) {
  TempDir dir;
  const std::string path = dir.write("empty.png", {});
  expect_data_error([&] { load_rgb(path); }, {path, "empty"});
}

// The header alone gives the size decoding gives, for every format (a server checks it before decoding), and a
// file that is no image is the same DataError as for decoding.
TEST(ImageDecode, ImageSizeReadsTheHeaderOfEachFormat) {
  auto bytes_of = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  for (const char* f : {"wide.png", "tall.jpg", "rgba.png", "small.png"}) files.emplace_back(f, bytes_of(kImages + "/" + f));
  for (const char* f : {"libjpeg_h2v2_progressive.jpg", "pil_cmyk.jpg", "libjpeg_gray.jpg"})
    files.emplace_back(f, bytes_of(std::string(MMR_IMAGE_TEST_DATA_DIR) + "/" + f));
  std::vector<uint8_t> rgba(24 * 10 * 4, 200);
  files.emplace_back("lossless.webp", encode_lossless_webp(rgba, 24, 10));
  for (const auto& [name, bytes] : files) {
    ASSERT_FALSE(bytes.empty()) << name;
    const ImageSize size = image_size(bytes.data(), bytes.size(), name);
    const RgbImage img = decode_rgb(bytes.data(), bytes.size(), name);
    EXPECT_EQ(size.width, img.width) << name;
    EXPECT_EQ(size.height, img.height) << name;
  }
  const std::string text = "not an image at all";
  expect_data_error([&] { image_size(reinterpret_cast<const uint8_t*>(text.data()), text.size(), "x.png"); },
                    {"x.png", "unknown image type"});
}
