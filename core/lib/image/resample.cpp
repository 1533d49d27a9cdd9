// Pillow's antialiased resize (Image.resize with BICUBIC and friends), rewritten from the algorithm in Pillow's
// src/libImaging/Resample.c so the uint8 output matches PIL exactly.
//
// What this is: for each output pixel along one axis, a window of input pixels weighted by the filter evaluated
// at (input centre - output centre) / scale, where scale = max(1, in/out) widens the filter when shrinking (the
// antialiasing). Weights are normalised to sum 1 in double, then turned into 22-bit fixed-point integers; each
// pass accumulates in integers, starting from half an LSB, and clips to 0..255 with a floor shift. Horizontal
// pass first, then vertical, with the uint8 intermediate image between them — all as Pillow does, because every
// one of these steps changes some output values by one grey level.
// What this is not: Pillow's NEAREST path, its reducing_gap pre-shrink (Image.resize's default reducing_gap=None
// does not use it), or the 16/32-bit modes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "core/api/error.h"
#include "core/lib/image/image.h"

namespace mmr::image {
namespace {

// 32 bits minus 8 for the pixel value minus 2 for the overshoot of negative lobes (Resample.c PRECISION_BITS).
constexpr int kPrecisionBits = 32 - 8 - 2;
constexpr double kPi = 3.14159265358979323846;   // M_PI, which strict C++ does not promise

struct Filter {
  double (*weight)(double x);
  double support;   // half-width of the kernel at scale 1
};

double box_weight(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bilinear_weight(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double hamming_weight(double x) {
  x = std::fabs(x);
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x *= kPi;
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));   // 0.54f/0.46f: float literals, as in Pillow
}

// Keys' cubic convolution with a = -0.5 (Pillow's choice; OpenCV uses -0.75, so the two differ).
double bicubic_weight(double x) {
  constexpr double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= kPi;
  return std::sin(x) / x;
}

double lanczos_weight(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

Filter filter_for(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::kBox: return {box_weight, 0.5};
    case ResampleFilter::kBilinear: return {bilinear_weight, 1.0};
    case ResampleFilter::kHamming: return {hamming_weight, 1.0};
    case ResampleFilter::kBicubic: return {bicubic_weight, 2.0};
    case ResampleFilter::kLanczos: return {lanczos_weight, 3.0};
  }
  throw DataError(fmt::format("unsupported resample filter {}; expected 1 (LANCZOS), 2 (BILINEAR), 3 (BICUBIC), "
                              "4 (BOX) or 5 (HAMMING)",
                              static_cast<int>(f)));
}

// The fixed-point weights of one axis: output i reads inputs [first[i], first[i] + count[i]).
struct Coefficients {
  int window = 0;                 // weights stored per output (the largest possible count)
  std::vector<int> first, count;  // per output
  std::vector<int32_t> weights;   // out_size * window
};

Coefficients precompute(int in_size, int out_size, const Filter& filter) {
  // Pillow computes this from a float box (in0, in1) = (0, in_size); the float subtraction is exact here.
  const double scale = static_cast<double>(static_cast<float>(in_size)) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = filter.support * filter_scale;
  Coefficients c;
  c.window = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.window, 0);
  std::vector<double> k(c.window);
  for (int out = 0; out < out_size; ++out) {
    const double center = (out + 0.5) * scale;
    const double inv = 1.0 / filter_scale;
    // (int)(x + 0.5) truncates towards zero, as the C code does; negatives are clamped to 0 anyway.
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter.weight((x + xmin - center + 0.5) * inv);
      k[x] = w;
      total += w;
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[x] / total : k[x];
      // Round half away from zero into 22-bit fixed point (normalize_coeffs_8bpc).
      const double scaled = w * (1 << kPrecisionBits);
      c.weights[static_cast<size_t>(out) * c.window + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + scaled : 0.5 + scaled);
    }
    c.first[out] = xmin;
    c.count[out] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t acc) {
  // Arithmetic shift = floor, then clamp; Pillow's lookup table does the same for the range it covers.
  const int64_t v = acc >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// (rows, in_w, 3) -> (rows, out_w, 3), reading input rows [row0, row0 + rows).
void resample_horizontal(const RgbImage& in, int row0, int rows, const Coefficients& c, int out_w,
                         std::vector<uint8_t>* out) {
  out->assign(static_cast<size_t>(rows) * out_w * 3, 0);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* src = &in.pixels[static_cast<size_t>(row0 + y) * in.width * 3];
    uint8_t* dst = &(*out)[static_cast<size_t>(y) * out_w * 3];
    for (int x = 0; x < out_w; ++x) {
      const int32_t* k = &c.weights[static_cast<size_t>(x) * c.window];
      const uint8_t* p = src + static_cast<size_t>(c.first[x]) * 3;
      int64_t r = 1 << (kPrecisionBits - 1), g = r, b = r;
      for (int i = 0; i < c.count[x]; ++i) {
        r += p[3 * i + 0] * static_cast<int64_t>(k[i]);
        g += p[3 * i + 1] * static_cast<int64_t>(k[i]);
        b += p[3 * i + 2] * static_cast<int64_t>(k[i]);
      }
      dst[3 * x + 0] = clip8(r);
      dst[3 * x + 1] = clip8(g);
      dst[3 * x + 2] = clip8(b);
    }
  }
}

// (in_h, w, 3) -> (out_h, w, 3); c.first is relative to the first row of `in`.
void resample_vertical(const std::vector<uint8_t>& in, int width, const Coefficients& c, int out_h,
                       std::vector<uint8_t>* out) {
  out->assign(static_cast<size_t>(out_h) * width * 3, 0);
  const size_t stride = static_cast<size_t>(width) * 3;
  for (int y = 0; y < out_h; ++y) {
    const int32_t* k = &c.weights[static_cast<size_t>(y) * c.window];
    const uint8_t* src = &in[static_cast<size_t>(c.first[y]) * stride];
    uint8_t* dst = &(*out)[static_cast<size_t>(y) * stride];
    for (size_t x = 0; x < stride; ++x) {
      int64_t acc = 1 << (kPrecisionBits - 1);
      for (int i = 0; i < c.count[y]; ++i) acc += src[i * stride + x] * static_cast<int64_t>(k[i]);
      dst[x] = clip8(acc);
    }
  }
}

}  // namespace

RgbImage resize(const RgbImage& image, int width, int height, ResampleFilter filter) {
  if (width <= 0 || height <= 0) {
    throw DataError(fmt::format("resize: target size {}x{} must be positive", width, height));
  }
  if (image.width <= 0 || image.height <= 0) throw DataError("resize: empty input image");
  const Filter f = filter_for(filter);
  const bool need_horizontal = width != image.width;
  const bool need_vertical = height != image.height;

  Coefficients vertical = precompute(image.height, height, f);
  // Only the input rows the vertical pass will read are resampled horizontally.
  const int row_first = vertical.first[0];
  const int row_last = vertical.first[height - 1] + vertical.count[height - 1];

  RgbImage out;
  out.width = width;
  out.height = height;
  if (need_horizontal) {
    Coefficients horizontal = precompute(image.width, width, f);
    std::vector<uint8_t> temp;
    if (need_vertical) {
      resample_horizontal(image, row_first, row_last - row_first, horizontal, width, &temp);
      for (int& first : vertical.first) first -= row_first;
      resample_vertical(temp, width, vertical, height, &out.pixels);
    } else {
      resample_horizontal(image, 0, image.height, horizontal, width, &out.pixels);
    }
  } else if (need_vertical) {
    resample_vertical(image.pixels, image.width, vertical, height, &out.pixels);
  } else {
    out.pixels = image.pixels;   // same size: Pillow returns a copy
  }
  return out;
}

}  // namespace mmr::image
