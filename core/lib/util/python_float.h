// Python's float(str): the number an official Python script reads from a judge's reply text, to the bit.
//
// Hand-written on purpose: no C++ parser accepts exactly what Python's float() accepts. std::strtod also takes
// hex floats ("0x1p3"), "nan(...)", "infinity" prefixes of longer words and the locale's decimal point, and it
// skips only leading whitespace; std::from_chars takes no sign '+', no "_" between digits and no "infinity".
// So the syntax is checked here, character by character, and only the plain decimal digits go to
// std::from_chars, which rounds correctly (round-half-even on the exact decimal value) as CPython's
// float() does: the same string gives the same double, bit for bit.
#pragma once

#include <optional>
#include <string_view>

namespace mmr {

// The value of Python's float(text), or nullopt where Python raises ValueError. Accepted: surrounding
// " \t\n\v\f\r" (float() strips less than str.strip(): "\x1c8" is a ValueError), an optional sign, then
// "inf", "infinity" or "nan" in any case, or a decimal literal (digits with an optional '.' part and an optional
// exponent) with single underscores between digits. An exponent beyond the double range gives +-inf or +-0, as
// in Python. Text is bytes here: non-ASCII spaces
// around the number (U+00A0, ...), which Python's float() also strips, are rejected.
std::optional<double> python_float(std::string_view text);

}  // namespace mmr
