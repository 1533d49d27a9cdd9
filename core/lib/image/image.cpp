// expand2square, crop, the preprocessing config and the LLaVA-1.5 pipeline. Decoding is in decode.cpp, the
// resize in resample.cpp.
//
// What this is: the path from decoded RGB pixels to the vision tower's float32 (3, H, W) input, as LLaVA's
// `process_images` + CLIPImageProcessor compute it in Python.
// What this is not: LLaVA-NeXT's "anyres" tiling.
#include "core/lib/image/image.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace mmr::image {
namespace {

[[noreturn]] void config_error(const std::string& source, const std::string& key, const std::string& message) {
  throw DataError(fmt::format("{}: key '{}': {}", source, key, message));
}

int positive_int(const nlohmann::json& v, const std::string& source, const std::string& key) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > 1 << 16) {
    config_error(source, key, fmt::format("expected a positive integer, found {}", v.dump()));
  }
  return v.get<int>();
}

std::array<double, 3> three_numbers(const nlohmann::json& v, const std::string& source, const std::string& key) {
  if (v.is_number()) return {v.get<double>(), v.get<double>(), v.get<double>()};
  if (!v.is_array() || v.size() != 3 || !v[0].is_number() || !v[1].is_number() || !v[2].is_number()) {
    config_error(source, key, fmt::format("expected 3 numbers (R, G, B), found {}", v.dump()));
  }
  return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Geometry

RgbImage expand_to_square(const RgbImage& image, const std::array<uint8_t, 3>& background) {
  if (image.width == image.height) return image;
  const int side = std::max(image.width, image.height);
  // LLaVA pastes at ((side - W) // 2, 0) for tall images and (0, (side - H) // 2) for wide ones.
  const int left = (side - image.width) / 2;
  const int top = (side - image.height) / 2;
  RgbImage out;
  out.width = out.height = side;
  out.pixels.resize(static_cast<size_t>(side) * side * 3);
  for (size_t i = 0; i < out.pixels.size(); i += 3) {
    out.pixels[i] = background[0];
    out.pixels[i + 1] = background[1];
    out.pixels[i + 2] = background[2];
  }
  const size_t row_bytes = static_cast<size_t>(image.width) * 3;
  for (int y = 0; y < image.height; ++y) {
    std::memcpy(&out.pixels[(static_cast<size_t>(top + y) * side + left) * 3], image.at(0, y), row_bytes);
  }
  return out;
}

RgbImage crop(const RgbImage& image, int left, int top, int width, int height) {
  if (left < 0 || top < 0 || width <= 0 || height <= 0 || left + width > image.width || top + height > image.height) {
    throw DataError(fmt::format("crop: box ({}, {}, {}x{}) is not inside the {}x{} image", left, top, width, height,
                                image.width, image.height));
  }
  RgbImage out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    std::memcpy(&out.pixels[static_cast<size_t>(y) * width * 3], image.at(left, top + y), static_cast<size_t>(width) * 3);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration

AspectMode parse_aspect_mode(const std::string& name) {
  if (name == "pad") return AspectMode::kPad;
  if (name == "center_crop") return AspectMode::kCenterCrop;
  if (name == "resize") return AspectMode::kResize;
  throw DataError(fmt::format("unknown image aspect mode '{}'; expected pad, center_crop or resize", name));
}

std::array<uint8_t, 3> PreprocessConfig::pad_color() const {
  std::array<uint8_t, 3> c{};
  for (int i = 0; i < 3; ++i) {
    // int() in Python truncates; the mean is in [0, 1] for any sane config, clamp anyway.
    const double v = std::clamp(image_mean[i] * 255.0, 0.0, 255.0);
    c[i] = static_cast<uint8_t>(static_cast<int>(v));
  }
  return c;
}

PreprocessConfig PreprocessConfig::from_json_text(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = parse_json_limited(text);
  } catch (const std::exception& e) {
    throw DataError(fmt::format("{}: not valid JSON: {}", source, e.what()));
  }
  if (!j.is_object()) throw DataError(fmt::format("{}: expected a JSON object, found {}", source, j.type_name()));

  PreprocessConfig c;
  bool crop_given = false;
  if (auto it = j.find("crop_size"); it != j.end()) {
    crop_given = true;
    if (it->is_number()) {
      c.crop_width = c.crop_height = positive_int(*it, source, "crop_size");
    } else if (it->is_object() && it->contains("height") && it->contains("width")) {
      c.crop_height = positive_int((*it)["height"], source, "crop_size.height");
      c.crop_width = positive_int((*it)["width"], source, "crop_size.width");
    } else {
      config_error(source, "crop_size", fmt::format("expected {{\"height\": H, \"width\": W}} or a number, found {}",
                                                    it->dump()));
    }
  }
  if (auto it = j.find("size"); it != j.end()) {
    if (it->is_number()) {
      c.shortest_edge = positive_int(*it, source, "size");
    } else if (it->is_object() && it->contains("shortest_edge")) {
      c.shortest_edge = positive_int((*it)["shortest_edge"], source, "size.shortest_edge");
    } else if (it->is_object() && it->contains("height") && it->contains("width")) {
      // A fixed-size processor (no crop): the size is the model input.
      const int h = positive_int((*it)["height"], source, "size.height");
      const int w = positive_int((*it)["width"], source, "size.width");
      if (!crop_given) {
        c.crop_height = h;
        c.crop_width = w;
      }
      c.shortest_edge = std::min(h, w);
    } else {
      config_error(source, "size", fmt::format("expected {{\"shortest_edge\": N}}, {{\"height\", \"width\"}} or a "
                                               "number, found {}",
                                               it->dump()));
    }
  }
  if (auto it = j.find("image_mean"); it != j.end()) c.image_mean = three_numbers(*it, source, "image_mean");
  if (auto it = j.find("image_std"); it != j.end()) {
    c.image_std = three_numbers(*it, source, "image_std");
    for (double s : c.image_std) {
      if (!(s > 0)) config_error(source, "image_std", fmt::format("expected positive values, found {}", it->dump()));
    }
  }
  if (auto it = j.find("rescale_factor"); it != j.end()) {
    if (!it->is_number()) config_error(source, "rescale_factor", fmt::format("expected a number, found {}", it->dump()));
    c.rescale_factor = it->get<double>();
  }
  for (auto [key, field] : {std::pair<const char*, bool*>{"do_rescale", &c.do_rescale},
                            std::pair<const char*, bool*>{"do_normalize", &c.do_normalize}}) {
    if (auto it = j.find(key); it != j.end()) {
      if (!it->is_boolean()) config_error(source, key, fmt::format("expected true or false, found {}", it->dump()));
      *field = it->get<bool>();
    }
  }
  if (auto it = j.find("resample"); it != j.end()) {
    if (!it->is_number_integer() || it->get<int>() < 1 || it->get<int>() > 5) {
      config_error(source, "resample", fmt::format("expected a PIL filter number: 1 (LANCZOS), 2 (BILINEAR), 3 "
                                                   "(BICUBIC), 4 (BOX) or 5 (HAMMING); found {}{}",
                                                   it->dump(), it->dump() == "0" ? " (NEAREST is not supported)" : ""));
    }
    c.resample = static_cast<ResampleFilter>(it->get<int>());
  }
  // LLaVA keeps this in the model config; accepted here too so one JSON can carry everything.
  if (auto it = j.find("image_aspect_ratio"); it != j.end()) {
    if (!it->is_string()) config_error(source, "image_aspect_ratio", fmt::format("expected a string, found {}", it->dump()));
    try {
      c.aspect_mode = parse_aspect_mode(it->get<std::string>());
    } catch (const DataError& e) {
      config_error(source, "image_aspect_ratio", e.what());
    }
  }
  return c;
}

PreprocessConfig PreprocessConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw DataError(fmt::format("{}: cannot open preprocessor config: {}", path, std::strerror(errno)));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return from_json_text(text, path);
}

// ---------------------------------------------------------------------------------------------------------------
// The pipeline

namespace {

// CLIPImageProcessor: resize so the shorter side is `shortest_edge` (the longer side int(S * long / short), as
// transformers' get_resize_output_image_size), then crop the centre at ((W - cw) // 2, (H - ch) // 2).
RgbImage shortest_edge_then_center_crop(const RgbImage& image, const PreprocessConfig& c) {
  const bool wide = image.width > image.height;
  const int short_side = wide ? image.height : image.width;
  const int long_side = wide ? image.width : image.height;
  const int new_long = static_cast<int>(static_cast<double>(c.shortest_edge) * long_side / short_side);
  const int new_w = wide ? new_long : c.shortest_edge;
  const int new_h = wide ? c.shortest_edge : new_long;
  RgbImage resized = resize(image, new_w, new_h, c.resample);
  if (new_w < c.crop_width || new_h < c.crop_height) {
    throw DataError(fmt::format("preprocess: resized image {}x{} is smaller than crop_size {}x{}; size.shortest_edge "
                                "must be at least the crop size",
                                new_w, new_h, c.crop_width, c.crop_height));
  }
  if (new_w == c.crop_width && new_h == c.crop_height) return resized;
  return crop(resized, (new_w - c.crop_width) / 2, (new_h - c.crop_height) / 2, c.crop_width, c.crop_height);
}

}  // namespace

RgbImage prepare_rgb(const RgbImage& image, const PreprocessConfig& c) {
  if (image.width <= 0 || image.height <= 0) throw DataError("preprocess: empty image");
  switch (c.aspect_mode) {
    case AspectMode::kPad:
      // LLaVA-1.5 process_images: expand2square, then the CLIP processor's own resize + centre crop (for the
      // square image and 336/336 settings that is a plain resize to 336x336).
      return shortest_edge_then_center_crop(expand_to_square(image, c.pad_color()), c);
    case AspectMode::kCenterCrop:
      return shortest_edge_then_center_crop(image, c);
    case AspectMode::kResize:
      return resize(image, c.crop_width, c.crop_height, c.resample);
  }
  MMR_CHECK(false, "bad AspectMode " << static_cast<int>(c.aspect_mode));
  return {};
}

std::vector<float> preprocess(const RgbImage& image, const PreprocessConfig& c) {
  const RgbImage rgb = prepare_rgb(image, c);
  const size_t plane = static_cast<size_t>(rgb.width) * rgb.height;
  std::vector<float> out(3 * plane);   // (3, H, W)
  for (int ch = 0; ch < 3; ++ch) {
    // One table per channel: every output value is a function of the uint8 input alone.
    float table[256];
    for (int v = 0; v < 256; ++v) {
      double x = c.do_rescale ? v * c.rescale_factor : static_cast<double>(v);
      if (c.do_normalize) x = (x - c.image_mean[ch]) / c.image_std[ch];
      table[v] = static_cast<float>(x);
    }
    float* dst = &out[ch * plane];
    for (size_t i = 0; i < plane; ++i) dst[i] = table[rgb.pixels[i * 3 + ch]];
  }
  return out;
}

std::vector<float> preprocess_file(const std::string& path, const PreprocessConfig& c) {
  return preprocess(load_rgb(path), c);
}

}  // namespace mmr::image
