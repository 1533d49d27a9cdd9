// The Python-literal parser: what str(dict) of the seed's turns looks like, with both quote styles and escapes.
#include <gtest/gtest.h>

#include "core/lib/data/py_literal.h"

using mmr::data::parse_py_literal;
using mmr::data::PyLiteralError;
using nlohmann::json;

TEST(PyLiteral, ParsesTheSeedsTurnWithBothQuoteStyles) {
  // repr() picks double quotes for a string holding a single quote.
  const json v = parse_py_literal("{'from': 'gpt', 'value': \"it's a cat\"}");
  EXPECT_EQ(v, json({{"from", "gpt"}, {"value", "it's a cat"}}));
}

TEST(PyLiteral, DecodesEscapes) {
  EXPECT_EQ(parse_py_literal(R"('<image>\nWhat\'s \"this\"?\t\\')"), "<image>\nWhat's \"this\"?\t\\");
  EXPECT_EQ(parse_py_literal(R"('\x41\u00e9\U0001F600\101\0')"), std::string("A\xC3\xA9\xF0\x9F\x98\x80" "A") + '\0');
  EXPECT_EQ(parse_py_literal(R"('\q')"), "\\q");  // unknown escapes are kept, as Python does
  EXPECT_EQ(parse_py_literal("'a\\\nb'"), "ab");   // backslash-newline continues the line
}

TEST(PyLiteral, RawTripleQuotedAndAdjacentStrings) {
  EXPECT_EQ(parse_py_literal(R"(r'a\nb')"), "a\\nb");
  EXPECT_EQ(parse_py_literal("'''one\n'two'\n'''"), "one\n'two'\n");
  EXPECT_EQ(parse_py_literal(R"('ab' "cd" u'ef')"), "abcdef");
}

TEST(PyLiteral, ListsTuplesNumbersAndConstants) {
  const json v = parse_py_literal("[{'from': 'human', 'value': 'q'}, (1, -2.5, 3e2,), True, False, None, 1_000,]");
  EXPECT_EQ(v, json::parse(R"([{"from":"human","value":"q"},[1,-2.5,300.0],true,false,null,1000])"));
  EXPECT_EQ(parse_py_literal("  {}  "), json::object());
  EXPECT_EQ(parse_py_literal("{'a': {'b': []},}"), json::parse(R"({"a":{"b":[]}})"));
}

TEST(PyLiteral, UnicodeTextPassesThrough) {
  EXPECT_EQ(parse_py_literal("'caf\xC3\xA9 \xE2\x9C\x93'"), "caf\xC3\xA9 \xE2\x9C\x93");
}

TEST(PyLiteral, ErrorsSayWhereAndWhat) {
  auto error = [](const std::string& text) -> std::string {
    try {
      parse_py_literal(text);
    } catch (const PyLiteralError& e) {
      return std::to_string(e.offset()) + " " + e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error("{'from': 'gpt', 'value': 'unclosed}"), "25 at character 25: string opened here with ' is not closed");
  EXPECT_EQ(error("{'from' 1}"), "8 at character 8: expected ':' after a dict key, found '1'");
  EXPECT_EQ(error("{'a': 1} x"), "9 at character 9: expected the end of the literal, found 'x'");
  EXPECT_EQ(error("{'a': nan}"), "6 at character 6: expected a dict, list, tuple, string, number, True, False or None, found 'n'");
  EXPECT_EQ(error("[1, 2"), "5 at character 5: expected ',' or ']' in a list, found the end of the text");
  EXPECT_EQ(error(R"('\x4')"), "1 at character 1: escape needs 2 hex digits");
  EXPECT_EQ(error("'a\nb'"), "2 at character 2: newline inside a single-quoted string");
  // Found by probing: 100,000 nested brackets overflowed the stack of the recursive parser.
  EXPECT_EQ(error(std::string(100000, '[') + std::string(100000, ']')),
            "256 at character 256: nested deeper than 256 levels");
  EXPECT_EQ(error(std::string(256, '[') + std::string(256, ']')), "no error");
}
