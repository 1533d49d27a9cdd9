// The row formats (core/lib/data/rows.h): one JSON value (parsed as the record reader parses a line) read as a
// conversation, a preference pair and a scored-candidates row. Bad rows are BadRow. A row that parses must read
// back unchanged from its own normalised JSON (rows.h: "Each parser reads its own output back unchanged").
#include <cstdlib>
#include <iostream>

#include "core/lib/data/rows.h"
#include "core/lib/util/json_safe.h"
#include "fuzz/fuzz.h"

namespace {

using mmr::data::ParseOptions;
using mmr::RowOrigin;

template <typename Parse>
void parse_and_round_trip(const nlohmann::json& value, Parse parse) {
  const RowOrigin origin{"fuzz.jsonl", 1};
  const ParseOptions options;
  nlohmann::ordered_json first;
  try {
    first = mmr::data::to_json(parse(value, origin, options));
  } catch (const mmr::data::BadRow&) {
    return;
  }
  const nlohmann::json again = nlohmann::json::parse(first.dump());
  const nlohmann::ordered_json second = mmr::data::to_json(parse(again, origin, options));
  if (second != first) {
    std::cerr << "round trip changed the row:\n" << mmr::dump_text(first) << "\n" << mmr::dump_text(second) << "\n";
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json value;
  try {
    value = mmr::parse_json_limited(mmr::fuzz::text(data, size));
  } catch (const nlohmann::json::parse_error&) {
    return 0;
  } catch (const mmr::JsonTooDeep&) {
    return 0;
  }
  parse_and_round_trip(value, mmr::data::parse_conversation_row);
  parse_and_round_trip(value, mmr::data::parse_preference_row);
  parse_and_round_trip(value, mmr::data::parse_scored_candidates_row);
  return 0;
}
