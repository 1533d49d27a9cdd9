// The grading rule of reference_match.h: normalisation, the answer-bearing tokens, their F1 (or the order check)
// and the per-benchmark scores.
#include <algorithm>
#include <map>

#include "plugins/judges/reference_match/reference_match.h"

namespace mmr::reference_match {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
// Python's string.punctuation.
bool is_punctuation(char c) {
  return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

// round(num / den) with halves up, for num >= 0, den > 0.
int64_t round_half_up(int64_t num, int64_t den) { return (2 * num + den) / (2 * den); }

// The ground truth without "<AND>" markers, split at "<OR>" (pad_ground_truth put spaces around both).
std::vector<std::string> alternatives(std::string_view ground_truth) {
  std::string text;
  for (size_t i = 0; i < ground_truth.size();) {
    if (ground_truth.compare(i, 5, "<AND>") == 0) {
      text += ' ';
      i += 5;
    } else {
      text += ground_truth[i++];
    }
  }
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t hit; (hit = text.find("<OR>", start)) != std::string::npos; start = hit + 4)
    out.push_back(text.substr(start, hit - start));
  out.push_back(text.substr(start));
  return out;
}

// Whether the text's last character (past closing quotes and brackets) ends a sentence.
bool ends_sentence(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && is_space(text[end - 1])) --end;
  while (end > 0 && std::string_view("\"')]").find(text[end - 1]) != std::string_view::npos) --end;
  return end > 0 && std::string_view(".!?").find(text[end - 1]) != std::string_view::npos;
}

bool has_run_of_three(const std::vector<std::string>& toks) {
  for (size_t i = 2; i < toks.size(); ++i)
    if (toks[i] == toks[i - 1] && toks[i] == toks[i - 2]) return true;
  return false;
}

}  // namespace

std::string normalise(std::string_view text) {
  std::string out;
  bool space = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (is_space(c)) {
      space = !out.empty();
      continue;
    }
    if (is_punctuation(c)) {
      const bool next_digit = i + 1 < text.size() && is_digit(text[i + 1]);
      const bool prev_alnum = i > 0 && is_alnum(text[i - 1]);
      const bool sign = (c == '-' || c == '+') && next_digit && !prev_alnum;
      const bool decimal_point = c == '.' && next_digit && i > 0 && is_digit(text[i - 1]);
      if (!sign && !decimal_point) continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::vector<std::string> tokens(std::string_view text) {
  const std::string norm = normalise(text);
  std::vector<std::string> out;
  for (size_t start = 0; start < norm.size();) {
    size_t end = norm.find(' ', start);
    if (end == std::string::npos) end = norm.size();
    out.push_back(norm.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> answer_tokens(std::string_view question, std::string_view text) {
  std::map<std::string, int64_t> asked;
  for (std::string& t : tokens(question)) ++asked[std::move(t)];
  std::vector<std::string> out;
  for (std::string& t : tokens(text)) {
    auto it = asked.find(t);
    if (it != asked.end() && it->second > 0) {
      --it->second;  // one occurrence removed per occurrence in the question
    } else {
      out.push_back(std::move(t));
    }
  }
  return out;
}

AnswerScore answer_score(std::string_view question, std::string_view reference, std::string_view response) {
  const std::vector<std::string> ref = tokens(reference), resp = tokens(response);
  AnswerScore s;
  if (ref == resp) {
    s.basis = AnswerScore::Basis::kExact;
    return s;
  }
  const std::vector<std::string> ref_answer = answer_tokens(question, reference);
  if (ref_answer.empty()) {
    // Nothing but the question's words: the answer is their order. An empty reference has no order to find.
    s.basis = AnswerScore::Basis::kOrder;
    s.contiguous = !ref.empty() && std::search(resp.begin(), resp.end(), ref.begin(), ref.end()) != resp.end();
    return s;
  }
  const std::vector<std::string> resp_answer = answer_tokens(question, response);
  s.basis = AnswerScore::Basis::kAnswerTokens;
  s.reference_tokens = static_cast<int64_t>(ref_answer.size());
  s.response_tokens = static_cast<int64_t>(resp_answer.size());
  std::map<std::string, int64_t> counts;
  for (const auto& t : ref_answer) ++counts[t];
  for (const auto& t : resp_answer)
    if (auto it = counts.find(t); it != counts.end() && it->second > 0) {
      --it->second;
      ++s.common;
    }
  return s;
}

std::pair<int64_t, int64_t> AnswerScore::fraction() const {
  switch (basis) {
    case Basis::kExact: return {1, 1};
    case Basis::kOrder: return {contiguous ? 1 : 0, 1};
    case Basis::kAnswerTokens: break;
  }
  if (common == 0) return {0, 1};  // also when the response has no answer-bearing token
  return {2 * common, response_tokens + reference_tokens};
}

double AnswerScore::value() const {
  const auto [num, den] = fraction();
  return static_cast<double>(num) / static_cast<double>(den);
}

int64_t AnswerScore::scaled(int64_t scale) const {
  const auto [num, den] = fraction();
  return round_half_up(scale * num, den);
}

bool better(const AnswerScore& a, const AnswerScore& b) {
  const auto [an, ad] = a.fraction();
  const auto [bn, bd] = b.fraction();
  return an * bd > bn * ad;
}

int mt_bench_rating(std::string_view question, std::string_view reference, std::string_view response) {
  return 1 + static_cast<int>(answer_score(question, reference, response).scaled(9));
}

int mm_vet_tenths(std::string_view question, std::string_view ground_truth, std::string_view prediction) {
  std::optional<AnswerScore> best;
  for (const std::string& alternative : alternatives(ground_truth)) {
    const AnswerScore f = answer_score(question, alternative, prediction);
    if (!best || better(f, *best)) best = f;
  }
  return static_cast<int>(best->scaled(10));
}

int coherence(std::string_view reference, std::string_view response) {
  const std::vector<std::string> toks = tokens(response);
  if (toks.empty()) return 0;
  int score = 4;
  if (has_run_of_three(toks)) score -= 2;
  if (ends_sentence(reference) && !ends_sentence(response)) score -= 1;
  return score;
}

int verbosity(int64_t response_tokens, int64_t reference_tokens) {
  if (reference_tokens == 0) return response_tokens == 0 ? 2 : 4;
  const int64_t r10 = 10 * response_tokens;  // compared with 10 r-thresholds x reference tokens
  if (r10 < 4 * reference_tokens) return 0;
  if (r10 < 7 * reference_tokens) return 1;
  if (r10 <= 13 * reference_tokens) return 2;
  if (r10 <= 20 * reference_tokens) return 3;
  return 4;
}

HelpSteerScores helpsteer_scores(std::string_view question, std::string_view reference, std::string_view response) {
  HelpSteerScores s;
  s.helpfulness = s.correctness = static_cast<int>(answer_score(question, reference, response).scaled(4));
  s.coherence = coherence(reference, response);
  s.complexity = 1;
  // The length ratio over all tokens, as in token-f1-v1.
  s.verbosity =
      verbosity(static_cast<int64_t>(tokens(response).size()), static_cast<int64_t>(tokens(reference).size()));
  return s;
}

}  // namespace mmr::reference_match
