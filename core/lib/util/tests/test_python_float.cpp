// python_float against values CPython 3 prints for float(s), and the strings it rejects (ValueError).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/lib/util/python_float.h"
#include "core/lib/util/strings.h"

namespace {

using mmr::python_float;

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

TEST(PythonFloat, ReadsDecimalLiteralsCorrectlyRounded) {
  EXPECT_TRUE(same_bits(*python_float("0.1"), 0.1));
  EXPECT_TRUE(same_bits(*python_float("2.675"), 2.675));
  EXPECT_TRUE(same_bits(*python_float(".5"), 0.5));
  EXPECT_TRUE(same_bits(*python_float("5."), 5.0));
  EXPECT_TRUE(same_bits(*python_float("1e-1"), 0.1));
  EXPECT_TRUE(same_bits(*python_float("-0"), -0.0));
  // 2**-1074 and the halfway point above it, which rounds to even (the same double).
  EXPECT_TRUE(same_bits(*python_float("4.9406564584124654e-324"), std::ldexp(1.0, -1074)));
  EXPECT_TRUE(same_bits(*python_float("9007199254740993"), 9007199254740992.0));
}

TEST(PythonFloat, AcceptsWhatPythonAccepts) {
  EXPECT_EQ(python_float(" \t\v8\f\r\n"), 8.0);
  EXPECT_EQ(python_float("+7"), 7.0);
  EXPECT_EQ(python_float("1_000.5"), 1000.5);
  EXPECT_EQ(python_float("1e1_0"), 1e10);
  EXPECT_EQ(python_float("Infinity"), HUGE_VAL);
  EXPECT_EQ(python_float("-inF"), -HUGE_VAL);
  EXPECT_TRUE(std::isnan(*python_float("NaN")));
  EXPECT_EQ(python_float("1e999"), HUGE_VAL);  // overflow is inf, underflow 0: no error, as in Python
  EXPECT_EQ(python_float("1e-999"), 0.0);
}

TEST(PythonFloat, RejectsWhatPythonRejects) {
  for (const char* s : {"", " ", "0x10", "1__0", "_1", "1_", "1._5", "1e", "e5", ".", "nan(1)", "infinit", "1,5",
                        "8 9", "0.7.", "--1", "1d", "\x1c" "8", "8\x1f"}) {
    EXPECT_FALSE(python_float(s)) << s;
  }
}

TEST(PythonStrings, SplitKeepsEmptyPiecesAndStripIsAscii) {
  const auto parts = mmr::python_split("8  9", ' ');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(mmr::python_strip("\x1c a \x1f"), "a");
  EXPECT_TRUE(mmr::iequals("InFiNiTy", "infinity"));
  EXPECT_FALSE(mmr::iequals("inf", "infinity"));
}

}  // namespace
