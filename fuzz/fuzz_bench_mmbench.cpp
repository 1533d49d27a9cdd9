// MMBench's TSV files (plugins/benchmarks/mmbench/scoring.h): read as a predictions file, merged with itself as
// the data, scored by the rules (no judge), and its image cells decoded. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/mmbench/scoring.h"

namespace {

namespace mb = mmr::mmbench;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("predictions.tsv", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] {
    const mb::Table table = mb::read_tsv(path, "MMBench predictions");
    const std::vector<mb::Row> data_rows = mb::read_rows(table, false);
    for (const mb::Row& row : data_rows) (void)mb::base64_decode(row.image, path);
    const std::vector<mb::Row> rows = mb::merge(mb::read_rows(table, true), path, data_rows, path);
    (void)mb::to_metrics(mb::score(rows, path, mb::ScoreOptions{}), false);
  });
  return 0;
}
