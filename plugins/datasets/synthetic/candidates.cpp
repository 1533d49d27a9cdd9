#include "plugins/datasets/synthetic/candidates.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <sstream>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/names.h"

namespace mmr::synthetic {

namespace {
const EnumNames<CandidateKind>& candidate_kinds() {
  static const EnumNames<CandidateKind> kNames({"correct", "partial", "hallucinated", "padded"}, "candidate kind",
                                               "kinds");
  return kNames;
}
}  // namespace

const std::vector<CandidateKind>& all_candidate_kinds() { return candidate_kinds().values(); }
const std::string& candidate_kind_name(CandidateKind kind) { return candidate_kinds().name(kind); }
CandidateKind candidate_kind_from_name(const std::string& name, const std::string& key) {
  return candidate_kinds().from_name(name, key);
}

const std::vector<std::string>& attribute_names() {
  static const std::vector<std::string> kNames = {"Helpfulness", "Correctness", "Coherence", "Complexity",
                                                  "Verbosity"};
  return kNames;
}

std::vector<int> AttributeScores::values() const {
  return {helpfulness, correctness, coherence, complexity, verbosity};
}

std::map<std::string, double> AttributeScores::by_name() const {
  std::map<std::string, double> out;
  const std::vector<int> v = values();
  for (size_t i = 0; i < v.size(); ++i) out[attribute_names()[i]] = v[i];
  return out;
}

nlohmann::ordered_json AttributeScores::to_json() const {
  nlohmann::ordered_json j;
  const std::vector<int> v = values();
  for (size_t i = 0; i < v.size(); ++i) j[attribute_names()[i]] = v[i];  // integers, as the files have always had
  return j;
}

bool AttributeScores::operator==(const AttributeScores& o) const { return values() == o.values(); }

int base_complexity(QuestionType type) {
  switch (type) {
    case QuestionType::kColour:
    case QuestionType::kExistence: return 0;
    case QuestionType::kCount:
    case QuestionType::kPosition: return 1;
  }
  return 0;
}

int base_complexity(TextTaskType type) {
  switch (type) {
    case TextTaskType::kUppercase: return 0;
    case TextTaskType::kAdd:
    case TextTaskType::kSubtract:
    case TextTaskType::kReverse:
    case TextTaskType::kCountLetter: return 1;
    case TextTaskType::kMultiply:
    case TextTaskType::kSortNumbers:
    case TextTaskType::kSortWords: return 2;
    case TextTaskType::kWordProblem: return 3;
  }
  return 0;
}

int word_count(const std::string& text) {
  std::istringstream in(text);
  std::string word;
  int n = 0;
  while (in >> word) ++n;
  return n;
}

int verbosity_for_words(int words) {
  if (words <= 4) return 0;
  if (words <= 10) return 1;
  if (words <= 20) return 2;
  if (words <= 35) return 3;
  return 4;
}

AttributeScores score_candidate(CandidateKind kind, const std::string& response, int base) {
  AttributeScores s;
  switch (kind) {
    case CandidateKind::kCorrect: s.helpfulness = 4; s.correctness = 4; s.coherence = 4; break;
    case CandidateKind::kPadded: s.helpfulness = 3; s.correctness = 4; s.coherence = 4; break;
    case CandidateKind::kPartial: s.helpfulness = 2; s.correctness = 2; s.coherence = 3; break;
    case CandidateKind::kHallucinated: s.helpfulness = 1; s.correctness = 0; s.coherence = 3; break;
  }
  const int words = word_count(response);
  s.complexity = std::clamp(base + (words > 30 ? 1 : 0), 0, 4);
  s.verbosity = verbosity_for_words(words);
  return s;
}

namespace {

// A category absent from the image, as "a purple star"; empty when every category is present.
std::string absent_object_phrase(const ImageTruth& truth, const Vocabulary& vocab, Rng& rng) {
  std::vector<int> absent;
  for (int c = 0; c < vocab.num_categories(); ++c) {
    const bool here = std::any_of(truth.objects.begin(), truth.objects.end(), [&](const SceneObject& o) {
      return vocab.category_of(o.shape, o.colour) == c;
    });
    if (!here) absent.push_back(c);
  }
  if (absent.empty()) return "";
  const std::string name = vocab.name_of(rng.pick(absent));
  return article_for(name) + " " + name;
}

std::string count_sentence(int n, const std::string& singular, const std::string& plural) {
  if (n == 0) return fmt::format("There are no {}.", plural);
  if (n == 1) return fmt::format("There is 1 {}.", singular);
  return fmt::format("There are {} {}.", n, plural);
}

int other_colour(int colour, const Vocabulary& vocab, Rng& rng) {
  std::vector<int> others;
  for (int c : vocab.colours) {
    if (c != colour) others.push_back(c);
  }
  if (others.empty()) {  // a one-colour world: any other palette colour
    for (int c = 0; c < static_cast<int>(palette().size()); ++c) {
      if (c != colour) others.push_back(c);
    }
  }
  return rng.pick(others);
}

Position one_axis_off(Position p, Rng& rng) {
  if (rng.bernoulli(0.5)) {
    p.v = static_cast<VPos>((static_cast<int>(p.v) + rng.uniform_int(1, 2)) % 3);
  } else {
    p.h = static_cast<HPos>((static_cast<int>(p.h) + rng.uniform_int(1, 2)) % 3);
  }
  return p;
}

Position both_axes_off(Position p, Rng& rng) {
  p.v = static_cast<VPos>((static_cast<int>(p.v) + rng.uniform_int(1, 2)) % 3);
  p.h = static_cast<HPos>((static_cast<int>(p.h) + rng.uniform_int(1, 2)) % 3);
  return p;
}

// " Extra." appended when `extra` is not empty.
std::string with_sentence(const std::string& text, const std::string& extra) {
  return extra.empty() ? text : text + " " + extra;
}

}  // namespace

namespace {

// The partial and hallucinated answers of each question type; `absent` names an object not in the image (or is
// empty). Each draws from `rng` in a fixed order, which is part of the world's format.
void count_variants(const VqaItem& item, const std::string& absent, Rng& rng, ResponseVariants& v) {
  const int lo = (item.count > 0 && rng.bernoulli(0.5)) ? item.count - 1 : item.count;
  v.partial = fmt::format("There are either {} or {} {}; I cannot tell exactly.", lo, lo + 1, item.noun_plural);
  const int wrong = (item.count > 0 && rng.bernoulli(0.5)) ? item.count - 1
                                                           : item.count + static_cast<int>(rng.uniform_int(1, 2));
  v.hallucinated = with_sentence(count_sentence(wrong, item.noun_singular, item.noun_plural),
                                 absent.empty() ? "" : fmt::format("I can also see {}.", absent));
}

void colour_variants(const VqaItem& item, const std::string& absent, const Vocabulary& vocab, Rng& rng,
                     ResponseVariants& v) {
  const std::string right = palette()[item.colour].name;
  const std::string other = palette()[other_colour(item.colour, vocab, rng)].name;
  const bool right_first = rng.bernoulli(0.5);
  v.partial = fmt::format("{} is either {} or {}.", capitalised(item.subject), right_first ? right : other,
                          right_first ? other : right);
  const std::string wrong = palette()[other_colour(item.colour, vocab, rng)].name;
  v.hallucinated = fmt::format("{} is {}", capitalised(item.subject), wrong) +
                   (absent.empty() ? "." : fmt::format(", and there is {} beside it.", absent));
}

void position_variants(const VqaItem& item, const std::string& absent, Rng& rng, ResponseVariants& v) {
  v.partial = fmt::format("{} is {}, I believe.", capitalised(item.subject),
                          position_with_preposition(one_axis_off(item.position, rng)));
  v.hallucinated = fmt::format("{} is {}", capitalised(item.subject),
                               position_with_preposition(both_axes_off(item.position, rng))) +
                   (absent.empty() ? "." : fmt::format(", next to {}.", absent));
}

void existence_variants(const VqaItem& item, const ImageTruth& truth, const std::string& absent,
                        const Vocabulary& vocab, Rng& rng, ResponseVariants& v) {
  const std::string a = article_for(item.noun_singular);
  if (item.exists) {
    // Right answer, wrong place: a bucket holding no instance of the object.
    std::vector<Position> elsewhere;
    for (Position p : all_positions()) {
      const bool taken = std::any_of(truth.objects.begin(), truth.objects.end(), [&](const SceneObject& o) {
        return o.position == p && vocab.name_of(vocab.category_of(o.shape, o.colour)) == item.noun_singular;
      });
      if (!taken) elsewhere.push_back(p);
    }
    v.partial = elsewhere.empty()
                    ? fmt::format("Yes, I think there may be {} {} somewhere.", a, item.noun_singular)
                    : fmt::format("Yes, there is {} {} {}.", a, item.noun_singular,
                                  position_with_preposition(rng.pick(elsewhere)));
    v.hallucinated = fmt::format("No, there is no {} in the image", item.noun_singular) +
                     (absent.empty() ? "." : fmt::format("; I only see {}.", absent));
  } else {
    v.partial = fmt::format("I am not sure, but I do not think there is {} {} in the image.", a,
                            item.noun_singular);
    v.hallucinated = fmt::format("Yes, there is {} {} {} of the image.", a, item.noun_singular,
                                 position_with_preposition(rng.pick(all_positions())));
  }
}

}  // namespace

ResponseVariants vqa_variants(const VqaItem& item, const ImageTruth& truth, const Vocabulary& vocab, Rng& rng) {
  ResponseVariants v;
  v.correct = item.answer;
  v.base_complexity = base_complexity(item.type);
  const std::string absent = absent_object_phrase(truth, vocab, rng);
  switch (item.type) {
    case QuestionType::kCount: count_variants(item, absent, rng, v); break;
    case QuestionType::kColour: colour_variants(item, absent, vocab, rng, v); break;
    case QuestionType::kPosition: position_variants(item, absent, rng, v); break;
    case QuestionType::kExistence: existence_variants(item, truth, absent, vocab, rng, v); break;
  }
  return v;
}

ResponseVariants text_variants(const TextTask& task) {
  ResponseVariants v;
  v.correct = task.answer;
  v.partial = task.partial;
  v.hallucinated = task.wrong;
  v.base_complexity = base_complexity(task.type);
  return v;
}

std::string pad_response(const std::string& correct, Rng& rng) {
  std::vector<std::string> openers = {"Great question!", "Let me take a careful look at this.",
                                      "Sure, I would be happy to help with that.",
                                      "Thank you for this interesting question."};
  std::vector<std::string> closers = {"I hope this helps!", "Let me know if you have any other questions.",
                                      "Feel free to ask if anything is unclear.",
                                      "I double-checked this carefully to be sure."};
  rng.shuffle(openers);
  rng.shuffle(closers);
  openers.resize(static_cast<size_t>(rng.uniform_int(1, 2)));
  closers.resize(static_cast<size_t>(rng.uniform_int(1, 2)));
  return fmt::format("{} {} {}", fmt::join(openers, " "), correct, fmt::join(closers, " "));
}

std::vector<Candidate> make_candidates(const ResponseVariants& variants, int n, const KindWeights& weights,
                                       Rng& rng) {
  const std::vector<uint64_t> w = {weights.correct, weights.partial, weights.hallucinated, weights.padded};
  std::vector<Candidate> out;
  for (int i = 0; i < n; ++i) {
    Candidate c;
    c.kind = all_candidate_kinds()[rng.weighted_index(w)];
    switch (c.kind) {
      case CandidateKind::kCorrect: c.response = variants.correct; break;
      case CandidateKind::kPartial: c.response = variants.partial; break;
      case CandidateKind::kHallucinated: c.response = variants.hallucinated; break;
      case CandidateKind::kPadded: c.response = pad_response(variants.correct, rng); break;
    }
    c.scores = score_candidate(c.kind, c.response, variants.base_complexity);
    out.push_back(std::move(c));
  }
  return out;
}

nlohmann::ordered_json scored_candidates_row(const std::string& id, const std::string& image,
                                             const std::string& question, const std::vector<Candidate>& candidates) {
  nlohmann::ordered_json row;
  row["id"] = id;
  if (!image.empty()) row["image"] = image;
  row["question"] = question;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Candidate& c : candidates) {
    nlohmann::ordered_json item;
    item["response"] = c.response;
    item["kind"] = candidate_kind_name(c.kind);
    item["scores"] = c.scores.to_json();
    list.push_back(std::move(item));
  }
  row["candidates"] = std::move(list);
  return row;
}

}  // namespace mmr::synthetic
