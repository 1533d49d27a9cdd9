// The datasets' image check (`check_images`, check_image_file) against the real decoder (core/lib/image): for a
// file of every format the check passes it exactly when the decoder reads it, so a row the training stage cannot
// decode is a bad row at load time; WebP rows load, TIFF and unknown files are bad rows naming the file.
#include <webp/encode.h>
#include <webp/types.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include <string>
#include <vector>

#include "core/lib/image/image.h"
#include "helpers.h"

using namespace mmr;
using namespace mmr::data;
using namespace mmr::data::test;

namespace {

class ImageCheck : public TempDir {
 protected:
  // The files of every kind, written into the test's folder: {name, bytes}.
  std::vector<std::pair<std::string, std::string>> samples() {
    std::vector<std::pair<std::string, std::string>> out;
    out.push_back({"png.png", read(kImages / "wide.png")});
    out.push_back({"jpeg.jpg", read(kImages / "tall.jpg")});
    // A 2x1 GIF89a, red then blue, written out by hand (Pillow reads it as those two pixels).
    out.push_back({"gif.gif", std::string("GIF89a\x02\x00\x01\x00\x80\x00\x00\xff\x00\x00\x00\x00\xff"
                                          "\x2c\x00\x00\x00\x00\x02\x00\x01\x00\x00\x02\x02\x44\x0a\x00\x3b",
                                          35)});
    const unsigned char rgb[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120};
    std::string bmp;
    stbi_write_bmp_to_func([](void* ctx, void* data, int size) {
      static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
    }, &bmp, 2, 2, 3, rgb);
    out.push_back({"bmp.bmp", bmp});
    uint8_t* webp = nullptr;
    const size_t webp_size = WebPEncodeLosslessRGB(rgb, 2, 2, 6, &webp);
    out.push_back({"webp.webp", std::string(reinterpret_cast<const char*>(webp), webp_size)});
    WebPFree(webp);
    out.push_back({"tiff.tif", std::string("II*\0\x08\0\0\0", 8) + std::string(64, '\0')});
    out.push_back({"text.png", "just some text, not an image"});
    out.push_back({"empty.jpg", ""});
    return out;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
};

}  // namespace

TEST_F(ImageCheck, PassesExactlyTheFilesTheDecoderReads) {
  const std::vector<std::string> readable = {"png.png", "jpeg.jpg", "gif.gif", "bmp.bmp", "webp.webp"};
  for (const auto& [name, bytes] : samples()) {
    const std::string path = write(name, bytes);
    std::string message;
    const bool check_passes = check_image_file(path, message).empty();
    bool decodes = true;
    try {
      image::load_rgb(path);
    } catch (const DataError&) {
      decodes = false;
    }
    EXPECT_EQ(check_passes, decodes) << name << ": " << message;
    EXPECT_EQ(decodes, std::find(readable.begin(), readable.end(), name) != readable.end()) << name;
  }
}

TEST_F(ImageCheck, WebpRowLoadsAndTiffAndUnknownRowsAreBadRowsNamingTheFile) {
  const auto files = samples();
  auto path_of = [&](const std::string& name) {
    for (const auto& [n, bytes] : files)
      if (n == name) return write(n, bytes);
    ADD_FAILURE() << name;
    return std::string();
  };
  const std::string webp = path_of("webp.webp"), tiff = path_of("tiff.tif"), text = path_of("text.png");
  auto row = [](const std::string& image) {
    return R"({"image": ")" + image + R"(", "question": "<image>\nq", "chosen": "c", "rejected": "r"})" + "\n";
  };
  const std::string rows = write("p.jsonl", row(webp) + row(tiff) + row(text));

  const LoadResult r = load(RowKind::Preference, rows, "on_bad_row: skip");
  ASSERT_EQ(r.rows.preferences.size(), 1u);
  EXPECT_EQ(r.rows.preferences[0].images, std::vector<std::string>{webp});
  ASSERT_EQ(r.bad_rows.size(), 2u);
  EXPECT_EQ(r.counts.at("skipped/unreadable_image"), 2);
  EXPECT_EQ(r.bad_rows[0].row, 2);
  EXPECT_NE(r.bad_rows[0].message.find("'" + tiff + "' is a TIFF image, which the image decoder does not read"),
            std::string::npos)
      << r.bad_rows[0].message;
  EXPECT_NE(r.bad_rows[1].message.find("'" + text + "' is not an image (expected JPEG, PNG, GIF, BMP or WebP)"),
            std::string::npos)
      << r.bad_rows[1].message;

  // on_bad_row: fail (the default) stops at the TIFF row, naming file, row, reason and image.
  const std::string error = load_error(RowKind::Preference, rows);
  EXPECT_EQ(error.rfind(rows + ":2: unreadable_image: ", 0), 0u) << error;
  EXPECT_NE(error.find("TIFF"), std::string::npos) << error;
}
