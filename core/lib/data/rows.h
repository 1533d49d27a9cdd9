// Row formats: JSON values from a data file -> the normalized rows of core/api/dataset_api.h, and back to JSON.
//
// A row that cannot be used throws BadRow with a reason code (the metric suffix: skipped/<reason>) and a
// message; the loader adds the file and row number. Reason codes:
//   bad_json            a JSONL line that is not JSON
//   not_an_object       the row is not a JSON object
//   missing_field       a required field is absent or null
//   wrong_type          a field has the wrong JSON type
//   bad_literal         a Python-literal string (the seed's "{'from': 'gpt', ...}") that does not parse
//   bad_role            a turn's speaker is not human/user, gpt/assistant or system
//   bad_turn_order      a conversation that does not alternate human, gpt, ... (LLaVA's preprocess requires it)
//   empty_response      an empty (or blank) reply
//   no_image_token      an image is given but the text has no "<image>"
//   image_token_without_image   "<image>" in the text but no image given
//   image_token_mismatch        more "<image>" placeholders than images
//   bad_score           a candidate attribute missing, not a number or outside 0-4
//   missing_image, unreadable_image   (checked by the pipeline once image paths are final, see pipeline.h)
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "core/api/dataset_api.h"

namespace mmr::data {

class BadRow : public DataError {
 public:
  BadRow(std::string reason, const std::string& message) : DataError(message), reason_(std::move(reason)) {}
  const std::string& reason() const { return reason_; }

 private:
  std::string reason_;
};

// What to do when an image is given but the text has no "<image>": fail the row (require), prepend "<image>\n"
// to the first human turn as LLaVA's data does (add), or leave the text alone (ignore).
enum class ImageTokenPolicy { Require, Add, Ignore };

struct ParseOptions {
  std::string image_folder;  // relative image paths are joined to it ("" = used as written)
  ImageTokenPolicy image_token = ImageTokenPolicy::Require;
  std::vector<std::string> required_attributes = attribute_names();  // scored candidates
};

ConversationRow parse_conversation_row(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt);
PreferenceRow parse_preference_row(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt);
ScoredCandidatesRow parse_scored_candidates_row(const nlohmann::json& row, const RowOrigin& origin,
                                                const ParseOptions& opt);

// The normalized JSON of a row (what the prepare stage writes, one per line). Each parser reads its own output
// back unchanged (images stay as written, so give no image_folder when reading a prepared file).
nlohmann::ordered_json to_json(const ConversationRow& row);
nlohmann::ordered_json to_json(const PreferenceRow& row);
nlohmann::ordered_json to_json(const ScoredCandidatesRow& row);

// One turn from {from, value} / {role, content} / the Python-literal string of such a dict. `field` names it in
// errors. Exposed for tests.
Turn parse_turn(const nlohmann::json& v, const std::string& field);

// Swaps chosen and rejected with every win/rej field (flip_fraction).
void flip(PreferenceRow& row);

// Number of "<image>" placeholders in a text.
size_t count_image_tokens(const std::string& text);

}  // namespace mmr::data
