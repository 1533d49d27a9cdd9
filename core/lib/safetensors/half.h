// Bit-exact conversions between float32 and the two 16-bit float formats found in checkpoints (F16, BF16).
//
// What this is: small inline functions, torch-free, so both the safetensors reader/writer and a model plugin
// can use them. Narrowing rounds to nearest, ties to even (what torch's .to(torch.bfloat16 / float16) does),
// keeps NaN a (quiet) NaN and keeps the sign of zero and infinity.
// What this is not: a vectorised converter; checkpoints are converted once at load time.
#pragma once

#include <cstdint>
#include <cstring>

namespace mmr::safetensors {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// BF16 is the top half of an IEEE float32, so widening is a shift.
inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {   // NaN: keep sign and top payload bits, force quiet so it stays NaN
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  // Round to nearest even on the 16 dropped bits; a carry into the exponent correctly rounds up to inf.
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits; subnormals down to 2^-24.
inline float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {   // inf / NaN: all-ones exponent, payload shifted into place
    return bits_float(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    if (mantissa == 0) return bits_float(sign);   // signed zero
    // Subnormal: value = mantissa * 2^-24, exact in float32.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;   // 2^-24
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));   // 112 = 127 - 15
}

inline uint16_t float_to_f16(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) {   // NaN: quiet, keep the top payload bits
    return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  if (abs >= 0x477ff000u) {   // >= 65520 rounds to inf (65504 is the largest finite half)
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (abs < 0x38800000u) {   // below 2^-14: subnormal half (or zero)
    if (abs < 0x33000000u) return sign;   // below 2^-25: rounds to zero (2^-25 itself is a tie to even zero)
    // Make the implicit bit explicit and shift so that the result's LSB is 2^-24; round to nearest even.
    uint32_t exponent = abs >> 23;
    uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exponent;   // 14..24 for exponents 102..112
    uint32_t result = mantissa >> shift;
    uint32_t remainder = mantissa & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even.
  uint32_t rebiased = abs - (112u << 23);
  uint32_t result = rebiased >> 13;
  uint32_t remainder = rebiased & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

}  // namespace mmr::safetensors
