// The prompt formats of reference_match.h: the texts recognised, the template matcher and the replies.
#include <fmt/format.h>

#include "core/api/error.h"
#include "plugins/judges/reference_match/reference_match.h"

namespace mmr::reference_match {

// FastChat's judge prompts (fastchat/llm_judge/data/judge_prompts.jsonl, lm-sys/FastChat blob 4ec7524c, Apache-2.0;
// tests/data/benchmarks/mt_bench/judge_prompts.jsonl is a byte-exact copy, and the tests compare these texts with
// it), as plugins/benchmarks/mt_bench fills them with format_template.
const char* const kMtBenchSingleMathSystem =
    "You are a helpful assistant.";
const char* const kMtBenchSingleMathTemplate =
    "[Instruction]\n"
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the "
    "user question displayed below. Your evaluation should consider correctness and helpfulness. You will be given "
    "a reference answer and the assistant's answer. Begin your evaluation by comparing the assistant's answer with "
    "the reference answer. Identify and correct any mistakes. Be as objective as possible. After providing your "
    "explanation, you must rate the response on a scale of 1 to 10 by strictly following this format: "
    "\"[[rating]]\", for example: \"Rating: [[5]]\".\n"
    "\n"
    "[Question]\n"
    "{question}\n"
    "\n"
    "[The Start of Reference Answer]\n"
    "{ref_answer_1}\n"
    "[The End of Reference Answer]\n"
    "\n"
    "[The Start of Assistant's Answer]\n"
    "{answer}\n"
    "[The End of Assistant's Answer]";
const char* const kMtBenchMultiTurnMathSystem =
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the "
    "user question. Your evaluation should consider correctness and helpfulness. You will be given a reference "
    "answer and the assistant's answer. You evaluation should focus on the assistant's answer to the second "
    "question. Begin your evaluation by comparing the assistant's answer with the reference answer. Identify and "
    "correct any mistakes. Be as objective as possible. After providing your explanation, you must rate the "
    "response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for example: \"Rating: "
    "[[5]]\".\n"
    "\n";
const char* const kMtBenchMultiTurnMathTemplate =
    "<|The Start of Reference Answer|>\n"
    "\n"
    "### User:\n"
    "{question_1}\n"
    "\n"
    "### Reference answer:\n"
    "{ref_answer_1}\n"
    "\n"
    "### User:\n"
    "{question_2}\n"
    "\n"
    "### Reference answer:\n"
    "{ref_answer_2}\n"
    "\n"
    "<|The End of Reference Answer|>\n"
    "\n"
    "\n"
    "<|The Start of Assistant A's Conversation with User|>\n"
    "\n"
    "### User:\n"
    "{question_1}\n"
    "\n"
    "### Assistant A:\n"
    "{answer_1}\n"
    "\n"
    "### User:\n"
    "{question_2}\n"
    "\n"
    "### Assistant A:\n"
    "{answer_2}\n"
    "\n"
    "<|The End of Assistant A's Conversation with User|>";


namespace {

// MM-Vet's grader message (mm-vet_evaluator.py, yuweihao/MM-Vet @ c7ff270): the few-shot prompt starts with this
// sentence and holds this table header; build_grader_message appends "\n" + "question | ground truth |
// prediction | " to the prompt, which ends with a newline, so the graded row follows the first blank line after
// the header; the retry form appends kMmVetRetry.
constexpr std::string_view kMmVetStart =
    "Compare the ground truth and prediction from AI models, to give a correctness score for the prediction.";
constexpr std::string_view kMmVetHeader = "Question | Ground truth | Prediction | Correctness\n--- | --- | --- | ---\n";
constexpr std::string_view kMmVetRetry = "\nPredict the correctness of the answer (digit): ";
constexpr std::string_view kMmVetRow = "{question} | {ground_truth} | {prediction} | ";

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// ---- the template matcher ----

struct Piece {
  bool field = false;
  std::string text;  // the literal text, or the field's name
};

std::vector<Piece> parse_template(std::string_view tmpl) {
  auto name_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  std::vector<Piece> pieces;
  auto literal = [&](char c) {
    if (pieces.empty() || pieces.back().field) pieces.push_back({false, ""});
    pieces.back().text += c;
  };
  for (size_t i = 0; i < tmpl.size(); ++i) {
    size_t close = i + 1;
    while (tmpl[i] == '{' && close < tmpl.size() && name_char(tmpl[close])) ++close;
    if (tmpl[i] != '{' || close == i + 1 || close >= tmpl.size() || tmpl[close] != '}') {
      literal(tmpl[i]);
      continue;
    }
    MMR_CHECK(pieces.empty() || !pieces.back().field, "template fields must be separated by text: " << tmpl);
    pieces.push_back({true, std::string(tmpl.substr(i + 1, close - i - 1))});
    i = close;
  }
  return pieces;
}

class Matcher {
 public:
  Matcher(std::vector<Piece> pieces, std::string_view text) : pieces_(std::move(pieces)), text_(text) {}
  std::optional<std::map<std::string, std::string>> run() {
    if (match(0, 0)) return bound_;
    return std::nullopt;
  }

 private:
  // The text a piece must show at a position: a literal, or a field bound earlier; nullptr for a free field.
  const std::string* fixed(const Piece& p) const {
    if (!p.field) return &p.text;
    auto it = bound_.find(p.text);
    return it == bound_.end() ? nullptr : &it->second;
  }

  bool match(size_t i, size_t pos) {
    if (--budget_ < 0) return false;
    if (i == pieces_.size()) return pos == text_.size();
    if (const std::string* want = fixed(pieces_[i]))
      return text_.compare(pos, want->size(), *want) == 0 && match(i + 1, pos + want->size());
    const std::string& name = pieces_[i].text;
    if (i + 1 == pieces_.size()) {
      bound_[name] = std::string(text_.substr(pos));
      return true;
    }
    const std::string* next = fixed(pieces_[i + 1]);  // a literal: parse_template never puts two fields together
    for (size_t end = text_.find(*next, pos); end != std::string_view::npos; end = text_.find(*next, end + 1)) {
      bound_[name] = std::string(text_.substr(pos, end - pos));
      if (match(i + 1, end)) return true;
    }
    bound_.erase(name);
    return false;
  }

  const std::vector<Piece> pieces_;
  const std::string_view text_;
  std::map<std::string, std::string> bound_;
  int64_t budget_ = 100000;  // steps; a prompt that needs more is not recognised
};

std::optional<Recognised> mt_bench(const JudgeRequest& r) {
  if (r.system == kMtBenchSingleMathSystem)
    if (auto f = match_template(kMtBenchSingleMathTemplate, r.user))
      return Recognised{Format::kMtBenchSingleMath, f->at("question"), f->at("ref_answer_1"), f->at("answer")};
  if (r.system == kMtBenchMultiTurnMathSystem)
    if (auto f = match_template(kMtBenchMultiTurnMathTemplate, r.user))
      return Recognised{Format::kMtBenchSingleMathMultiTurn, f->at("question_2"), f->at("ref_answer_2"),
                        f->at("answer_2")};
  return std::nullopt;
}

std::optional<Recognised> mm_vet(const JudgeRequest& r) {
  const std::string_view message = r.user;
  if (!starts_with(message, kMmVetStart)) return std::nullopt;
  const size_t header = message.find(kMmVetHeader);
  if (header == std::string_view::npos) return std::nullopt;
  const size_t blank = message.find("\n\n", header + kMmVetHeader.size());
  if (blank == std::string_view::npos) return std::nullopt;
  std::string_view row = message.substr(blank + 2);
  if (ends_with(row, kMmVetRetry)) row.remove_suffix(kMmVetRetry.size());
  auto f = match_template(kMmVetRow, row);
  if (!f) return std::nullopt;
  return Recognised{Format::kMmVetGrader, f->at("question"), f->at("ground_truth"), f->at("prediction")};
}

std::optional<Recognised> rubric(const JudgeRequest& r) {
  auto f = match_template(kRubricWithReference, r.user);
  if (!f) return std::nullopt;
  return Recognised{Format::kAnnotateRubricWithReference, f->at("question"), f->at("reference"), f->at("response")};
}

std::string unknown_format_error(const JudgeRequest& r) {
  std::string hint;
  if (starts_with(r.user, "[Instruction]\nPlease act as an impartial judge") ||
      starts_with(r.user, "<|The Start of Assistant A's Conversation with User|>"))
    hint = " It looks like an MT-Bench prompt without a reference answer (single-v1): FastChat judges only math, "
           "reasoning and coding against a reference, so use those categories.";
  std::string start = r.user.substr(0, 80);
  for (char& c : start)
    if (c == '\n') c = ' ';
  return fmt::format(
      "reference_match: the prompt is in none of the formats it grades against a reference answer: "
      "mt_bench_single_math and mt_bench_single_math_multi_turn (FastChat's single-math-v1 prompts), mm_vet_grader "
      "(MM-Vet's few-shot grader message), annotate_rubric_with_reference (annotate with rubric: "
      "plugins/judges/reference_match/rubric_with_reference.txt).{} The prompt starts: \"{}\"",
      hint, start);
}

}  // namespace

std::optional<std::map<std::string, std::string>> match_template(std::string_view tmpl, std::string_view text) {
  return Matcher(parse_template(tmpl), text).run();
}

const char* format_name(Format format) {
  switch (format) {
    case Format::kMtBenchSingleMath: return "mt_bench_single_math";
    case Format::kMtBenchSingleMathMultiTurn: return "mt_bench_single_math_multi_turn";
    case Format::kMmVetGrader: return "mm_vet_grader";
    case Format::kAnnotateRubricWithReference: return "annotate_rubric_with_reference";
  }
  return "unknown";
}

std::optional<Recognised> recognise(const JudgeRequest& request) {
  if (auto r = mt_bench(request)) return r;
  if (auto r = mm_vet(request)) return r;
  return rubric(request);
}

JudgeReply grade(const JudgeRequest& request) {
  const std::optional<Recognised> r = recognise(request);
  if (!r) return {false, "", unknown_format_error(request)};
  switch (r->format) {
    case Format::kMtBenchSingleMath:
    case Format::kMtBenchSingleMathMultiTurn:
      return {true, fmt::format("Rating: [[{}]]", mt_bench_rating(r->question, r->reference, r->response)), ""};
    case Format::kMmVetGrader: {
      const int tenths = mm_vet_tenths(r->question, r->reference, r->response);
      return {true, fmt::format("{}.{}", tenths / 10, tenths % 10), ""};
    }
    case Format::kAnnotateRubricWithReference: {
      if (r->reference == "{reference}")  // a stage that filled {question} and {response} only
        return {false, "",
                "reference_match: the rubric's {reference} placeholder was not filled: the annotate stage must put "
                "each row's reference answer there (rubric_with_reference.txt)"};
      const HelpSteerScores s = helpsteer_scores(r->question, r->reference, r->response);
      return {true,
              fmt::format("Helpfulness: {}\nCorrectness: {}\nCoherence: {}\nComplexity: {}\nVerbosity: {}",
                          s.helpfulness, s.correctness, s.coherence, s.complexity, s.verbosity),
              ""};
    }
  }
  throw InternalError("reference_match: unhandled format");
}

}  // namespace mmr::reference_match
