// LLaVA-1.5 image preprocessing, reproducing what Python does with PIL: decode, Image.convert('RGB'),
// expand2square with the mean colour, Image.resize(..., BICUBIC), rescale 1/255, normalise with the CLIP mean/std.
//
// What this is: torch-free code that turns an image file into the float32 (3, H, W) pixel values the vision tower
// takes. Decoding uses the libraries Pillow uses, set up as Pillow sets them up (libjpeg-turbo for JPEG, libwebp for
// WebP; stb_image for PNG, GIF and BMP); the resize is Pillow's two-pass fixed-point convolution
// (libImaging/Resample.c) rewritten, so the output equals the Python reference bit for bit up to the final float
// division.
// What this is not: a general image library (no EXIF rotation, which LLaVA does not apply either; no colour
// management; no 16-bit output; no TIFF), nor LLaVA-NeXT "anyres" tiling.
//
// Shapes: H height, W width; RgbImage pixels are (H, W, 3) uint8; pixel values are (3, H, W) float32.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmr::image {

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;   // (H, W, 3), row-major

  const uint8_t* at(int x, int y) const { return &pixels[(static_cast<size_t>(y) * width + x) * 3]; }
};

// Decodes JPEG, PNG, GIF (first frame), BMP or WebP (first frame) and converts to RGB as PIL's
// Image.convert('RGB') does: grey is replicated into R, G and B, alpha is dropped (not composited), palettes are
// expanded, CMYK goes through PIL's formula. The format is told by the first bytes (format.h), not the file name.
// A missing, unreadable, truncated, corrupt or unsupported (TIFF) file throws mmr::DataError naming the file and
// the reason.
RgbImage load_rgb(const std::string& path);
// The same from bytes in memory; `source` names them in errors.
RgbImage decode_rgb(const uint8_t* bytes, size_t size, const std::string& source);

// An image's width and height read from its header, without decoding it: what a server checks before an image
// takes the model's time. Throws DataError as decode_rgb does for bytes it could not decode.
struct ImageSize {
  int64_t width = 0, height = 0;
};
ImageSize image_size(const uint8_t* bytes, size_t size, const std::string& source);

// LLaVA's expand2square: a square canvas of the longer side filled with `background`, the image pasted at
// ((side - W) // 2, 0) or (0, (side - H) // 2). A square image is returned unchanged.
RgbImage expand_to_square(const RgbImage& image, const std::array<uint8_t, 3>& background);

// PIL's resampling filters, numbered as PIL.Image.Resampling (the "resample" value in preprocessor_config.json).
// NEAREST (0) is a different algorithm in PIL and is not supported.
enum class ResampleFilter : int { kLanczos = 1, kBilinear = 2, kBicubic = 3, kBox = 4, kHamming = 5 };

// Image.resize((width, height), filter): separable, antialiased (the filter support widens with the
// downscale factor), 8-bit fixed-point weights, results clipped to uint8 after each pass.
RgbImage resize(const RgbImage& image, int width, int height, ResampleFilter filter);

// Top-left crop; the box must lie inside the image.
RgbImage crop(const RgbImage& image, int left, int top, int width, int height);

// How a non-square image reaches the model's square input.
enum class AspectMode {
  kPad,         // LLaVA-1.5 (image_aspect_ratio "pad"): expand2square with the mean colour, then resize
  kCenterCrop,  // CLIPImageProcessor's own path: shortest edge to `shortest_edge`, then centre crop
  kResize,      // stretch straight to the crop size, ignoring the aspect ratio
};

// The preprocessing settings, as in a Hugging Face preprocessor_config.json (CLIPImageProcessor).
struct PreprocessConfig {
  int crop_width = 336;      // "crop_size": {"height", "width"} (or a number): the model's input size
  int crop_height = 336;
  int shortest_edge = 336;   // "size": {"shortest_edge"} (or {"height","width"}, or a number); kCenterCrop only
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};   // CLIP
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};
  double rescale_factor = 1.0 / 255.0;
  bool do_rescale = true;
  bool do_normalize = true;
  ResampleFilter resample = ResampleFilter::kBicubic;
  AspectMode aspect_mode = AspectMode::kPad;   // not in preprocessor_config.json: LLaVA's image_aspect_ratio

  // Reads the keys above from a preprocessor_config.json; absent keys keep the defaults (CLIP ViT-L/14-336).
  // Bad values throw mmr::DataError naming the file, the key, what was expected and what was found.
  static PreprocessConfig from_json_file(const std::string& path);
  static PreprocessConfig from_json_text(const std::string& text, const std::string& source);

  // LLaVA: tuple(int(x * 255) for x in image_mean), i.e. rounded down: (122, 116, 104) for CLIP.
  std::array<uint8_t, 3> pad_color() const;
};

// "pad" | "center_crop" | "resize" (LLaVA's "square" is not a LLaVA-1.5 value; unknown names throw DataError).
AspectMode parse_aspect_mode(const std::string& name);

// The resized uint8 image before rescaling and normalisation (crop_height x crop_width).
RgbImage prepare_rgb(const RgbImage& image, const PreprocessConfig& config);

// The model input: (3, crop_height, crop_width) float32, (x * rescale_factor - mean) / std per channel.
std::vector<float> preprocess(const RgbImage& image, const PreprocessConfig& config);
std::vector<float> preprocess_file(const std::string& path, const PreprocessConfig& config);

}  // namespace mmr::image
