// Streaming: a generated 200k-row JSON array is read one element at a time; the peak resident memory while
// reading grows by far less than the file's size (reading the whole file into one string does not).
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "core/lib/data/records.h"
#include "helpers.h"

using namespace mmr;
using namespace mmr::data;
using namespace mmr::data::test;

namespace {

// Peak resident set size (VmHWM) in bytes; reset_peak() sets it back to the current RSS (Linux >= 4.0).
int64_t peak_rss() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}
bool reset_peak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

class Streaming : public TempDir {};

}  // namespace

TEST_F(Streaming, BigJsonArrayIsReadOneRowAtATime) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "AddressSanitizer keeps freed memory in quarantine: the process's peak RSS says nothing here";
#endif
  constexpr int kRows = 200000;
  const fs::path file = dir_ / "big.json";
  {
    std::ofstream out(file);
    out << "[\n";
    for (int i = 0; i < kRows; ++i) {
      out << (i ? ",\n" : "") << R"({"id": "row)" << i << R"(", "image": "img)" << i % 97
          << R"(.png", "conversations": [{"from": "human", "value": "<image>\nWhat is in picture number )" << i
          << R"( of this rather long generated file?"}, {"from": "gpt", "value": "A generated answer, number )" << i
          << R"(, padded so that the file is large enough to matter."}]})";
    }
    out << "\n]\n";
  }
  const int64_t file_size = static_cast<int64_t>(fs::file_size(file));
  ASSERT_GT(file_size, 50'000'000);

  if (!reset_peak()) GTEST_SKIP() << "cannot reset VmHWM (/proc/self/clear_refs)";
  const int64_t before = peak_rss();
  int64_t rows = 0, last_line = 0;
  std::string row_123456;
  const RecordFormat format = for_each_record(file, [&](Record& r) {
    ++rows;
    last_line = r.line;
    if (r.row == 123457) row_123456 = r.value["conversations"][1]["value"].get<std::string>();
    return true;
  });
  const int64_t growth = peak_rss() - before;
  std::cout << "[ streaming ] " << file_size << "-byte JSON array, peak RSS grew by " << growth << " bytes\n";
  EXPECT_EQ(format, RecordFormat::JsonArray);
  EXPECT_EQ(rows, kRows);
  EXPECT_EQ(last_line, kRows + 1);  // "[" is line 1, row k starts on line k + 1
  EXPECT_EQ(row_123456, "A generated answer, number 123456, padded so that the file is large enough to matter.");
  EXPECT_LT(growth, file_size / 10) << "peak RSS grew by " << growth << " bytes for a " << file_size << "-byte file";

  // The measurement itself can see a file-sized allocation: holding the whole text once grows the peak by it.
  ASSERT_TRUE(reset_peak());
  const int64_t before_slurp = peak_rss();
  {
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(static_cast<int64_t>(ss.str().size()), file_size);
  }
  EXPECT_GT(peak_rss() - before_slurp, file_size);
}

TEST_F(Streaming, JsonlIsReadLineByLineWithLineNumbers) {
  const std::string file = write("rows.jsonl", "\n{\"a\": 1}\n\n  \n{\"a\": 2}\n[3]\n");
  std::vector<std::pair<int64_t, std::string>> seen;
  EXPECT_EQ(for_each_record(file, [&](Record& r) {
              seen.emplace_back(r.row, r.value.dump());
              return true;
            }),
            RecordFormat::Jsonl);
  EXPECT_EQ(seen, (std::vector<std::pair<int64_t, std::string>>{{2, "{\"a\":1}"}, {5, "{\"a\":2}"}, {6, "[3]"}}));
}

TEST_F(Streaming, ArrayElementsOfAnyTypeAndEarlyStop) {
  const std::string file = write("a.json", "  [ {\"x\": [1, {\"y\": null}]}, 2, \"s\", [true] ]  ");
  std::vector<std::string> seen;
  for_each_record(file, [&](Record& r) {
    seen.push_back(r.value.dump());
    return seen.size() < 3;
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"{\"x\":[1,{\"y\":null}]}", "2", "\"s\""}));
  const std::string empty = write("e.json", "[]");
  int n = 0;
  for_each_record(empty, [&](Record&) { return ++n, true; });
  EXPECT_EQ(n, 0);
  EXPECT_THROW(for_each_record(dir_ / "missing.json", [](Record&) { return true; }), IoError);
  const std::string trailing = write("t.json", "[1] [2]");
  EXPECT_THROW(for_each_record(trailing, [](Record&) { return true; }), DataError);
}

// In a JSON array, a row nested past 256 levels ends the read with an error naming the row and line.
TEST_F(Streaming, AnOverDeepRowOfAJsonArrayIsAnErrorNamingIt) {
  const std::string file = write("deep.json", "[{\"id\": \"a\"},\n" + std::string(300, '[') + std::string(300, ']') + "]");
  int64_t n = 0;
  try {
    for_each_record(file, [&](Record&) { return ++n, true; });
    ADD_FAILURE() << "expected an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("row 2 (line 2): the row is nested deeper than 256 levels"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(n, 1);
}

// A JSONL line past 64 MiB, or nested past 256 levels, is a bad row saying why; the rows around it are read.
TEST_F(Streaming, AnOverLongOrOverDeepJsonlLineIsABadRowAndTheOthersAreRead) {
  const fs::path file = dir_ / "rows.jsonl";
  {
    std::ofstream out(file);
    out << R"({"id": "a"})" << "\n";
    out << R"({"id": "long", "text": ")" << std::string((size_t{64} << 20) + 10, 'x') << "\"}\n";
    out << std::string(300, '[') << std::string(300, ']') << "\n";
    out << R"({"id": "b"})";  // no newline at the end
  }
  std::vector<std::string> seen;
  for_each_record(file, [&](Record& r) {
    seen.push_back(std::to_string(r.line) + " " + (r.parse_error ? *r.parse_error : r.value["id"].get<std::string>()));
    return true;
  });
  const std::vector<std::string> want = {"1 a", "2 the line is longer than 64 MiB", "3 the row is nested deeper than 256 levels",
                                         "4 b"};
  EXPECT_EQ(seen, want);
}

// A number past a double's range (found by fuzz/fuzz_rows and fuzz_annotate_rows: nlohmann throws out_of_range for
// it, which escaped the reader) is a bad row like any invalid JSON; so is it inside a JSON array, ending the read.
TEST_F(Streaming, ANumberPastADoublesRangeIsABadRow) {
  const std::string jsonl =
      write("big.jsonl", "{\"id\": \"a\"}\n{\"id\": \"big\", \"score\": 21e308}\n{\"id\": \"b\"}\n");
  std::vector<std::string> seen;
  for_each_record(jsonl, [&](Record& r) {
    seen.push_back(r.parse_error ? *r.parse_error : r.value["id"].get<std::string>());
    return true;
  });
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], "a");
  EXPECT_NE(seen[1].find("invalid JSON: "), std::string::npos) << seen[1];
  EXPECT_NE(seen[1].find("number overflow parsing '21e308'"), std::string::npos) << seen[1];
  EXPECT_EQ(seen[2], "b");
  const std::string array = write("big.json", "[{\"id\": \"a\"},\n {\"score\": 1e999}]");
  try {
    for_each_record(array, [](Record&) { return true; });
    ADD_FAILURE() << "expected an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("row 2 (line 2)"), std::string::npos) << e.what();
  }
}
