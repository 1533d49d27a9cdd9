#include "core/lib/data/rows.h"

#include <cmath>
#include <filesystem>
#include <set>

#include "core/lib/data/py_literal.h"

namespace mmr::data {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

const char* kImageToken = "<image>";

std::string type_of(const json& v) { return v.type_name(); }

[[noreturn]] void wrong_type(const std::string& field, const std::string& expected, const json& found) {
  throw BadRow("wrong_type", "field '" + field + "': expected " + expected + ", found " + type_of(found));
}

const json& require(const json& row, const std::string& field) {
  auto it = row.find(field);
  if (it == row.end() || it->is_null()) throw BadRow("missing_field", "missing field '" + field + "'");
  return *it;
}

bool has(const json& row, const std::string& field) {
  auto it = row.find(field);
  return it != row.end() && !it->is_null();
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// Does a string hold the Python-literal (or JSON) text of a turn or a list of turns, rather than plain text?
bool looks_like_literal(const std::string& s) {
  const std::string t = trim(s);
  if (t.empty() || (t.front() != '{' && t.front() != '[')) return false;
  return t.find("'from'") != std::string::npos || t.find("\"from\"") != std::string::npos ||
         t.find("'role'") != std::string::npos || t.find("\"role\"") != std::string::npos;
}

json parse_literal_field(const std::string& text, const std::string& field) {
  try {
    return parse_py_literal(text);
  } catch (const PyLiteralError& e) {
    std::string shown = text.size() > 80 ? text.substr(0, 77) + "..." : text;
    throw BadRow("bad_literal", "field '" + field + "': not a valid Python literal (" + e.what() + "): " + shown);
  }
}

std::string normalize_role(const std::string& role, const std::string& field) {
  if (role == "human" || role == "user") return "human";
  if (role == "gpt" || role == "assistant" || role == "model") return "gpt";
  if (role == "system") return "system";
  throw BadRow("bad_role", "field '" + field + "': speaker '" + role + "' is not human/user, gpt/assistant or system");
}

// TRL multimodal content: [{"type": "image"}, {"type": "text", "text": "..."}] -> "<image>\n...".
std::string content_text(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(field, "a string or a list of content parts", content);
  std::string out;
  for (const auto& part : content) {
    if (!part.is_object() || !part.contains("type")) wrong_type(field, "content parts {type, text}", part);
    const std::string type = part["type"].is_string() ? part["type"].get<std::string>() : "";
    std::string piece;
    if (type == "image") piece = kImageToken;
    else if (type == "text" && part.contains("text") && part["text"].is_string()) piece = part["text"].get<std::string>();
    else wrong_type(field, "content parts of type 'image' or 'text' (with 'text')", part);
    if (!out.empty()) out += "\n";
    out += piece;
  }
  return out;
}

std::vector<Turn> parse_turns(const json& v, const std::string& field) {
  if (!v.is_array()) wrong_type(field, "a list of turns", v);
  std::vector<Turn> turns;
  for (size_t i = 0; i < v.size(); ++i) turns.push_back(parse_turn(v[i], field + "[" + std::to_string(i) + "]"));
  return turns;
}

// A JSON value that is a string holding a literal becomes the parsed value; anything else is returned as is.
json unliteral(const json& v, const std::string& field) {
  if (v.is_string() && looks_like_literal(v.get<std::string>())) return parse_literal_field(v.get<std::string>(), field);
  return v;
}

std::vector<std::string> parse_images(const json& row, const ParseOptions& opt) {
  std::vector<std::string> raw;
  for (const char* key : {"image", "images"}) {
    if (!has(row, key)) continue;
    const json& v = row[key];
    if (v.is_string()) {
      if (!v.get<std::string>().empty()) raw.push_back(v.get<std::string>());
    } else if (v.is_array()) {
      for (const auto& e : v) {
        if (!e.is_string()) wrong_type(key, "a list of image paths (strings)", e);
        raw.push_back(e.get<std::string>());
      }
    } else {
      wrong_type(key, "an image path or a list of them", v);
    }
  }
  std::vector<std::string> out;
  for (const auto& p : raw) {
    const std::filesystem::path path(p);
    out.push_back(path.is_absolute() || opt.image_folder.empty() ? p : (std::filesystem::path(opt.image_folder) / path).string());
  }
  return out;
}

std::string id_of(const json& row, const RowOrigin& origin) {
  if (!has(row, "id")) return "row" + std::to_string(origin.row);
  const json& v = row["id"];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  wrong_type("id", "a string or an integer", v);
}

// The fields every row kind starts with: the row is an object; its origin, id and images.
template <typename Row>
Row start_row(const json& row, const RowOrigin& origin, const ParseOptions& opt) {
  if (!row.is_object()) throw BadRow("not_an_object", std::string("expected a JSON object, found ") + row.type_name());
  Row out;
  out.origin = origin;
  out.id = id_of(row, origin);
  out.images = parse_images(row, opt);
  return out;
}

// The image/placeholder consistency check of LLaVA rows; `turns` are the turns the placeholders may be in.
void check_image_tokens(std::vector<Turn>& turns, size_t images, const ParseOptions& opt) {
  size_t tokens = 0;
  for (const auto& t : turns) tokens += count_image_tokens(t.value);
  if (opt.image_token == ImageTokenPolicy::Ignore) return;
  if (images > 0 && tokens == 0) {
    if (opt.image_token == ImageTokenPolicy::Add) {
      for (auto& t : turns)
        if (t.from == "human") {
          t.value = std::string(kImageToken) + "\n" + t.value;
          return;
        }
    }
    throw BadRow("no_image_token", "an image is given but the text has no \"<image>\" placeholder" +
                                       std::string(opt.image_token == ImageTokenPolicy::Require
                                                       ? " (set image_token: add to prepend one)" : ""));
  }
  if (images == 0 && tokens > 0)
    throw BadRow("image_token_without_image", "the text has \"<image>\" but the row gives no image");
  if (tokens > images)
    throw BadRow("image_token_mismatch", std::to_string(tokens) + " \"<image>\" placeholders for " +
                                             std::to_string(images) + " image(s)");
}

std::optional<double> optional_number(const json& row, const std::string& field) {
  if (!has(row, field)) return std::nullopt;
  const json& v = row[field];
  if (!v.is_number()) wrong_type(field, "a number", v);
  return v.get<double>();
}

std::vector<double> number_list(const json& row, const std::string& field) {
  std::vector<double> out;
  if (!has(row, field)) return out;
  const json& v = row[field];
  if (!v.is_array()) wrong_type(field, "a list of numbers", v);
  for (const auto& e : v) {
    if (!e.is_number()) wrong_type(field, "a list of numbers", e);
    out.push_back(e.get<double>());
  }
  return out;
}

json extra_fields(const json& row, const std::set<std::string>& known) {
  json extra = json::object();
  for (auto it = row.begin(); it != row.end(); ++it)
    if (!known.count(it.key())) extra[it.key()] = it.value();
  return extra;
}

ordered_json turns_json(const std::vector<Turn>& turns) {
  ordered_json out = ordered_json::array();
  for (const auto& t : turns) out.push_back({{"from", t.from}, {"value", t.value}});
  return out;
}

ordered_json origin_json(const RowOrigin& o) { return {{"file", o.file}, {"row", o.row}}; }

// The normalized JSON of a row: id and images, the fields of its kind, then where it came from and the fields of
// the source row that the struct has no place for.
template <typename Row>
ordered_json row_json(const Row& row, const ordered_json& fields) {
  ordered_json out;
  out["id"] = row.id;
  out["images"] = row.images;
  for (auto it = fields.begin(); it != fields.end(); ++it) out[it.key()] = it.value();
  out["source"] = origin_json(row.origin);
  for (auto it = row.extra.begin(); it != row.extra.end(); ++it)
    if (!out.contains(it.key())) out[it.key()] = it.value();
  return out;
}

// One side of a pair: a turn (or its literal) -> the reply text; a list of turns -> the whole conversation; a
// plain string -> the reply text itself (TRL's form).
Reply parse_reply(const json& raw, const std::string& field) {
  const json v = unliteral(raw, field);
  Reply r;
  if (v.is_string()) {
    r.text = v.get<std::string>();
  } else if (v.is_object()) {
    const Turn t = parse_turn(v, field);
    if (t.from != "gpt") throw BadRow("bad_role", "field '" + field + "': the reply is spoken by '" + t.from + "', not gpt/assistant");
    r.text = t.value;
  } else if (v.is_array()) {
    std::vector<Turn> turns = parse_turns(v, field);
    if (turns.empty()) throw BadRow("empty_response", "field '" + field + "': an empty conversation");
    if (turns.back().from != "gpt")
      throw BadRow("bad_role", "field '" + field + "': the conversation must end with a gpt/assistant turn");
    r.text = turns.back().value;
    if (turns.size() > 1) r.conversation = std::move(turns);  // one assistant turn = TRL's reply-only form
  } else {
    wrong_type(field, "a {from, value} turn, its Python-literal string, a list of turns or the reply text", v);
  }
  if (trim(r.text).empty()) throw BadRow("empty_response", "field '" + field + "': the reply is empty");
  return r;
}

std::string question_text(const json& raw, const std::string& field) {
  const json v = unliteral(raw, field);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) return parse_turn(v, field).value;
  wrong_type(field, "a string or a {from, value} turn", v);
}

}  // namespace

size_t count_image_tokens(const std::string& text) {
  size_t n = 0;
  for (size_t at = text.find(kImageToken); at != std::string::npos; at = text.find(kImageToken, at + 7)) ++n;
  return n;
}

Turn parse_turn(const json& raw, const std::string& field) {
  const json v = raw.is_string() ? parse_literal_field(raw.get<std::string>(), field) : raw;
  if (!v.is_object()) wrong_type(field, "a {from, value} turn", v);
  Turn t;
  if (v.contains("from") || v.contains("value")) {
    if (!has(v, "from")) throw BadRow("missing_field", "field '" + field + "': missing 'from'");
    if (!has(v, "value")) throw BadRow("missing_field", "field '" + field + "': missing 'value'");
    if (!v["from"].is_string()) wrong_type(field + ".from", "a string", v["from"]);
    if (!v["value"].is_string()) wrong_type(field + ".value", "a string", v["value"]);
    t.from = normalize_role(v["from"].get<std::string>(), field);
    t.value = v["value"].get<std::string>();
  } else if (v.contains("role") || v.contains("content")) {
    if (!has(v, "role")) throw BadRow("missing_field", "field '" + field + "': missing 'role'");
    if (!has(v, "content")) throw BadRow("missing_field", "field '" + field + "': missing 'content'");
    if (!v["role"].is_string()) wrong_type(field + ".role", "a string", v["role"]);
    t.from = normalize_role(v["role"].get<std::string>(), field);
    t.value = content_text(v["content"], field + ".content");
  } else {
    throw BadRow("missing_field", "field '" + field + "': a turn needs 'from' and 'value' (or 'role' and 'content')");
  }
  return t;
}

// ---- llava_json ---------------------------------------------------------------------------------------------

ConversationRow parse_conversation_row(const json& row, const RowOrigin& origin, const ParseOptions& opt) {
  ConversationRow out = start_row<ConversationRow>(row, origin, opt);
  const json& conv = require(row, "conversations");
  out.turns = parse_turns(conv, "conversations");
  if (out.turns.empty()) throw BadRow("empty_response", "field 'conversations': no turns");
  // LLaVA's preprocess: an optional system turn, then human, gpt, human, gpt, ...
  size_t first = out.turns.front().from == "system" ? 1 : 0;
  if (first == out.turns.size()) throw BadRow("empty_response", "field 'conversations': only a system turn");
  for (size_t i = first; i < out.turns.size(); ++i) {
    const char* want = (i - first) % 2 == 0 ? "human" : "gpt";
    if (out.turns[i].from != want)
      throw BadRow("bad_turn_order", "field 'conversations[" + std::to_string(i) + "]': expected a " + want +
                                         " turn, found " + out.turns[i].from + " (turns alternate human, gpt)");
    if (out.turns[i].from == "gpt" && trim(out.turns[i].value).empty())
      throw BadRow("empty_response", "field 'conversations[" + std::to_string(i) + "]': the gpt reply is empty");
  }
  if (out.turns.size() - first < 2) throw BadRow("empty_response", "field 'conversations': no gpt reply");
  check_image_tokens(out.turns, out.images.size(), opt);
  out.extra = extra_fields(row, {"id", "image", "images", "conversations", "source"});
  return out;
}

ordered_json to_json(const ConversationRow& row) {
  return row_json(row, {{"conversations", turns_json(row.turns)}});
}

// ---- preference ---------------------------------------------------------------------------------------------

namespace {

// The prompt: `question` (the seed) or `prompt` (TRL), as a turn, its literal, a list of turns or plain text; or,
// when the sides are whole conversations and neither is given, the chosen conversation before its reply.
// `field` is set to the field it came from (null for the conversation).
std::vector<Turn> parse_prompt(const json& row, const PreferenceRow& pair, const char*& field) {
  field = has(row, "question") ? "question" : has(row, "prompt") ? "prompt" : nullptr;
  std::vector<Turn> prompt;
  if (field) {
    const json v = unliteral(row[field], field);
    if (v.is_string()) prompt = {{"human", v.get<std::string>()}};
    else if (v.is_object()) prompt = {parse_turn(v, field)};
    else if (v.is_array()) prompt = parse_turns(v, field);
    else wrong_type(field, "a {from, value} turn, its Python-literal string, a list of turns or text", v);
  } else if (!pair.chosen.conversation.empty()) {
    prompt.assign(pair.chosen.conversation.begin(), pair.chosen.conversation.end() - 1);
  } else {
    throw BadRow("missing_field", "missing field 'question' (or 'prompt')");
  }
  if (prompt.empty() || trim(prompt.back().value).empty())
    throw BadRow("empty_response", std::string("field '") + (field ? field : "chosen") + "': the prompt is empty");
  return prompt;
}

// The precomputed reference log-probs and the flip mark.
void read_reference_fields(const json& row, PreferenceRow& out) {
  out.ref_win_logp = optional_number(row, "ref_win_logp");
  out.ref_rej_logp = optional_number(row, "ref_rej_logp");
  out.ref_win_avg_logp = optional_number(row, "ref_win_avg_logp");
  out.ref_rej_avg_logp = optional_number(row, "ref_rej_avg_logp");
  out.ref_win_per_token_logp = number_list(row, "ref_win_per_token_logp");
  out.ref_rej_per_token_logp = number_list(row, "ref_rej_per_token_logp");
  if (has(row, "flipped")) {
    if (!row["flipped"].is_boolean()) wrong_type("flipped", "true or false", row["flipped"]);
    out.flipped = row["flipped"].get<bool>();
  }
}

// Placeholders may sit in the prompt or, for whole conversations given without a prompt, in their human turns.
void check_pair_image_tokens(PreferenceRow& out, bool prompt_given, const ParseOptions& opt) {
  std::vector<Turn> with_tokens = out.prompt;
  size_t in_prompt = 0;
  for (const auto& t : out.prompt) in_prompt += count_image_tokens(t.value);
  if (in_prompt == 0 && !out.chosen.conversation.empty() && !prompt_given) with_tokens = out.chosen.conversation;
  check_image_tokens(with_tokens, out.images.size(), opt);
  if (with_tokens.size() == out.prompt.size()) out.prompt = with_tokens;  // "<image>\n" may have been added
}

}  // namespace

PreferenceRow parse_preference_row(const json& row, const RowOrigin& origin, const ParseOptions& opt) {
  PreferenceRow out = start_row<PreferenceRow>(row, origin, opt);
  out.chosen = parse_reply(require(row, "chosen"), "chosen");
  out.rejected = parse_reply(require(row, "rejected"), "rejected");
  const char* prompt_field = nullptr;
  out.prompt = parse_prompt(row, out, prompt_field);
  read_reference_fields(row, out);
  check_pair_image_tokens(out, prompt_field != nullptr, opt);
  out.extra = extra_fields(row, {"id", "image", "images", "question", "prompt", "chosen", "rejected", "ref_win_logp",
                                 "ref_rej_logp", "ref_win_avg_logp", "ref_rej_avg_logp", "ref_win_per_token_logp",
                                 "ref_rej_per_token_logp", "flipped", "source"});
  return out;
}

namespace {
ordered_json reply_json(const Reply& r) {
  if (!r.conversation.empty()) return turns_json(r.conversation);
  return {{"from", "gpt"}, {"value", r.text}};
}
}  // namespace

ordered_json to_json(const PreferenceRow& row) {
  ordered_json fields;
  fields["prompt"] = turns_json(row.prompt);
  fields["chosen"] = reply_json(row.chosen);
  fields["rejected"] = reply_json(row.rejected);
  if (row.ref_win_logp) fields["ref_win_logp"] = *row.ref_win_logp;
  if (row.ref_rej_logp) fields["ref_rej_logp"] = *row.ref_rej_logp;
  if (row.ref_win_avg_logp) fields["ref_win_avg_logp"] = *row.ref_win_avg_logp;
  if (row.ref_rej_avg_logp) fields["ref_rej_avg_logp"] = *row.ref_rej_avg_logp;
  if (!row.ref_win_per_token_logp.empty()) fields["ref_win_per_token_logp"] = row.ref_win_per_token_logp;
  if (!row.ref_rej_per_token_logp.empty()) fields["ref_rej_per_token_logp"] = row.ref_rej_per_token_logp;
  fields["flipped"] = row.flipped;
  return row_json(row, std::move(fields));
}

void flip(PreferenceRow& row) {
  std::swap(row.chosen, row.rejected);
  std::swap(row.ref_win_logp, row.ref_rej_logp);
  std::swap(row.ref_win_avg_logp, row.ref_rej_avg_logp);
  std::swap(row.ref_win_per_token_logp, row.ref_rej_per_token_logp);
  // Any other paired field the row carries (the seed's win_input_ids/rej_labels, build_pairs' chosen_scores, ...).
  static const std::pair<std::string, std::string> kPairs[] = {{"win_", "rej_"}, {"ref_win_", "ref_rej_"},
                                                               {"chosen_", "rejected_"}};
  json swapped = row.extra;
  for (auto it = row.extra.begin(); it != row.extra.end(); ++it) {
    for (const auto& [a, b] : kPairs) {
      const std::string& key = it.key();
      std::string other;
      if (key.rfind(a, 0) == 0) other = b + key.substr(a.size());
      else if (key.rfind(b, 0) == 0) other = a + key.substr(b.size());
      else continue;
      if (row.extra.contains(other)) swapped[other] = it.value();
      else {  // only one side present: it moves to the other name
        swapped.erase(key);
        swapped[other] = it.value();
      }
      break;
    }
  }
  row.extra = std::move(swapped);
  row.flipped = !row.flipped;
}

// ---- scored candidates --------------------------------------------------------------------------------------

namespace {

// One candidate: its text (`response`, `text` or `answer`) and its scores, in a `scores` map or as keys of the
// candidate itself. Required attributes must be there; every attribute given must be a number in 0-4.
Candidate parse_candidate(const json& c, const std::string& field, const ParseOptions& opt) {
  if (!c.is_object()) wrong_type(field, "an object {response, scores}", c);
  Candidate cand;
  const char* text_key = nullptr;
  for (const char* k : {"response", "text", "answer"})
    if (has(c, k)) {
      text_key = k;
      break;
    }
  if (!text_key) throw BadRow("missing_field", "field '" + field + "': missing 'response'");
  if (!c[text_key].is_string()) wrong_type(field + "." + text_key, "a string", c[text_key]);
  cand.response = c[text_key].get<std::string>();
  if (trim(cand.response).empty()) throw BadRow("empty_response", "field '" + field + "." + text_key + "': empty");
  const json& scores = has(c, "scores") ? c["scores"] : c;
  if (!scores.is_object()) wrong_type(field + ".scores", "a map attribute -> score", scores);
  const auto& required = opt.required_attributes;
  std::set<std::string> wanted(required.begin(), required.end());
  for (const auto& name : attribute_names()) wanted.insert(name);
  for (const auto& name : wanted) {
    if (!has(scores, name)) {
      if (std::find(required.begin(), required.end(), name) != required.end())
        throw BadRow("bad_score", "field '" + field + "': missing attribute score '" + name + "'");
      continue;
    }
    const json& s = scores[name];
    if (!s.is_number()) throw BadRow("bad_score", "field '" + field + "." + name + "': expected a number 0-4, found " + type_of(s));
    const double v = s.get<double>();
    if (!(v >= 0 && v <= 4)) throw BadRow("bad_score", "field '" + field + "." + name + "': " + s.dump() + " is outside 0-4");
    cand.scores[name] = v;
  }
  return cand;
}

}  // namespace

ScoredCandidatesRow parse_scored_candidates_row(const json& row, const RowOrigin& origin, const ParseOptions& opt) {
  ScoredCandidatesRow out = start_row<ScoredCandidatesRow>(row, origin, opt);
  out.question = question_text(require(row, "question"), "question");
  if (trim(out.question).empty()) throw BadRow("empty_response", "field 'question': empty");
  const json& cands = require(row, "candidates");
  if (!cands.is_array()) wrong_type("candidates", "a list of {response, scores}", cands);
  for (size_t i = 0; i < cands.size(); ++i)
    out.candidates.push_back(parse_candidate(cands[i], "candidates[" + std::to_string(i) + "]", opt));
  std::vector<Turn> q = {{"human", out.question}};
  check_image_tokens(q, out.images.size(), opt);
  out.question = q[0].value;
  out.extra = extra_fields(row, {"id", "image", "images", "question", "candidates", "source"});
  return out;
}

ordered_json to_json(const ScoredCandidatesRow& row) {
  ordered_json cands = ordered_json::array();
  for (const auto& c : row.candidates) {
    ordered_json scores = ordered_json::object();  // the five attributes in their order, then any others
    for (const auto& name : attribute_names())
      if (c.scores.count(name)) scores[name] = c.scores.at(name);
    for (const auto& [k, v] : c.scores)
      if (!scores.contains(k)) scores[k] = v;
    cands.push_back({{"response", c.response}, {"scores", scores}});
  }
  return row_json(row, {{"question", row.question}, {"candidates", std::move(cands)}});
}

}  // namespace mmr::data
