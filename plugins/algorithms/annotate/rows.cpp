// Reads the annotate stage's candidate rows (formats: annotate.h): the candidates form, and LLaVA-RLHF's
// human-preference rows as they are. The file is JSONL or a JSON array (LLaVA-RLHF ships one JSON array).
#include <fmt/format.h>

#include <optional>

#include "core/api/error.h"
#include "core/lib/data/records.h"
#include "core/lib/util/strings.h"
#include "plugins/algorithms/annotate/annotate.h"

namespace mmr::annotate {

namespace {

using Json = nlohmann::json;

std::string text_of(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object())
    for (const char* key : {"value", "content"})
      if (auto it = v.find(key); it != v.end() && it->is_string()) return it->get<std::string>();
  return "";
}

// The candidates' texts: each a string, or an object with "response" (or "text", "answer").
std::vector<std::string> responses_of(const Json& row, const std::string& where) {
  auto c = row.find("candidates");
  if (c == row.end() || !c->is_array() || c->empty())
    throw DataError(where + "\"candidates\": expected a non-empty list of responses");
  std::vector<std::string> responses;
  for (size_t k = 0; k < c->size(); ++k) {
    const Json& cand = (*c)[k];
    // An empty text is a reply too (a sampled model may end at once): it is graded, not refused.
    std::optional<std::string> response;
    if (cand.is_string()) response = cand.get<std::string>();
    for (const char* key : {"response", "text", "answer"})
      if (cand.is_object() && !response)
        if (auto it = cand.find(key); it != cand.end() && it->is_string()) response = it->get<std::string>();
    if (!response)
      throw DataError(fmt::format("{}candidates[{}]: expected a string or an object with \"response\", found {}",
                                  where, k, cand.dump()));
    responses.push_back(std::move(*response));
  }
  return responses;
}

// The question without LLaVA's "<image>" placeholder and the line break beside it: the judge is shown the image
// itself, as the authors' critique script did with `.replace('<image>', '')` (mllm-dpo
// llava/eval/eval_teacher_critique.py, eval_model()).
std::string without_image_marker(std::string text) {
  const std::string marker = "<image>";
  for (size_t at; (at = text.find(marker)) != std::string::npos;) {
    size_t end = at + marker.size();
    if (end < text.size() && text[end] == '\n') ++end;
    else if (at > 0 && text[at - 1] == '\n') --at;
    text.erase(at, end - at);
  }
  return std::string(python_strip(text));
}

// LLaVA-RLHF: the last human turn of `conversations` (nested once in a list in some rows, as data_utils_rm.py's
// reader allows) is the question; output_1 and output_2 are the two candidates.
void read_llava_rlhf(CandidateRow& r, const std::string& where) {
  const Json* turns = r.row.contains("conversations") ? &r.row["conversations"] : nullptr;
  if (turns && turns->is_array() && turns->size() == 1 && turns->front().is_array()) turns = &turns->front();
  if (!turns || !turns->is_array())
    throw DataError(where + "\"conversations\": expected the list of turns of a LLaVA-RLHF row");
  for (const Json& turn : *turns)
    if (turn.is_object() && turn.contains("from") && turn["from"] == "human")
      r.question = without_image_marker(text_of(turn));
  if (r.question.empty())
    throw DataError(where + "\"conversations\": no human turn with a non-empty \"value\" (the question)");
  for (const char* key : {"output_1", "output_2"}) {
    const Json out = r.row.value(key, Json());
    if (!out.is_string() && !(out.is_object() && out.contains("value") && out["value"].is_string()))
      throw DataError(fmt::format("{}\"{}\": expected {{\"from\": \"gpt\", \"value\": \"...\"}}, found {}", where, key,
                                  out.dump()));
    r.responses.push_back(text_of(out));
  }
}

void read_candidates_form(CandidateRow& r, const std::string& where) {
  auto q = r.row.find("question");
  if (q == r.row.end())
    throw DataError(where + "missing \"question\" (a string or a turn), or \"output_1\"/\"output_2\" with "
                            "\"conversations\" (a LLaVA-RLHF human-preference row)");
  r.question = text_of(*q);
  if (r.question.empty())
    throw DataError(where + "\"question\": expected a non-empty string or turn, found " + q->dump());
  r.responses = responses_of(r.row, where);
}

// One row; `where` is "path:line: ".
CandidateRow candidate_row(Json row, int line, const std::string& where) {
  if (!row.is_object()) throw DataError(where + "expected a JSON object");
  CandidateRow r;
  r.line = line;
  r.row = std::move(row);
  const bool llava_rlhf = !r.row.contains("candidates") && (r.row.contains("output_1") || r.row.contains("output_2"));
  if (llava_rlhf) read_llava_rlhf(r, where);
  else read_candidates_form(r, where);
  if (auto im = r.row.find("image"); im != r.row.end() && !im->is_null()) {
    if (!im->is_string()) throw DataError(where + "\"image\": expected a file name, found " + im->dump());
    r.image = im->get<std::string>();
  }
  if (auto ref = r.row.find("reference"); ref != r.row.end() && !ref->is_null()) {
    if (!ref->is_string()) throw DataError(where + "\"reference\": expected a string, found " + ref->dump());
    r.reference = ref->get<std::string>();
  }
  return r;
}

}  // namespace

std::vector<CandidateRow> read_candidate_rows(const std::string& path) {
  std::vector<CandidateRow> rows;
  data::for_each_record(path, [&](data::Record& rec) {
    const std::string where = fmt::format("{}:{}: ", path, rec.line);
    if (rec.parse_error) throw DataError(where + "malformed JSON line: " + *rec.parse_error);
    rows.push_back(candidate_row(std::move(rec.value), static_cast<int>(rec.line), where));
    return true;
  });
  return rows;
}

}  // namespace mmr::annotate
