// The pure half of the `annotate` stage (torch-free, no I/O besides reading the candidates file): the rubric
// prompts, reading candidate rows, and parsing the judge's scores. Two request forms (the stage's `request`):
//
//   per_prompt     all candidates of a row in one request (rubric_all_candidates.txt): the judge reasons, then ends
//                  with "[Scores]" and one line per candidate, "Candidate k: Helpfulness:3,Correctness:4,...". This is
//                  how the authors scored: their GPT-4V script (findalexli/SteerMLLM at 7c0f221,
//                  RLHF/gpt4_ratings/step1gpt4v.py, system_message at lines 22-76) sent the image, the question and
//                  candidate responses A, B, C in one request and asked the judge to answer the question itself,
//                  then write a CommentSection (its reasoning) and the ratings for each candidate; the mllm-dpo
//                  notebooks read the Gemini scores back as one row per candidate with the columns Key, Candidate,
//                  CommentSection, Helpfulness ... Verbosity (findalexli/mllm-dpo at 67f651c,
//                  scripts/v1_5/inspect_training_data.ipynb lines 45-52). The Gemini prompt itself is in neither
//                  repository, so the rubric's wording is ours, with HelpSteer's attribute definitions.
//   per_candidate  one request per candidate (rubric.txt), five "Attribute: N" lines back.
//
// Candidate rows, one per prompt, in a JSONL file or a JSON array (core/lib/data/records.h):
//   - the scored-candidates format of plugins/datasets/README.md without the scores: {"id", "image", "question",
//     "candidates": [{"response": "..."} | "...", ...], ...}; `question` a string or a turn ({"from"/"role",
//     "value"/"content"}); a candidate's text is `response` (or `text`, `answer`);
//   - LLaVA-RLHF's human-preference rows as they are (llava_7b_v1_preference.json of the Hugging Face dataset
//     zhiqings/LLaVA-Human-Preference-10K): {"id", "image", "conversations": [{"from": "human"|"gpt", "value"}...],
//     "output_1": {"from", "value"}, "output_2": {...}, "preference": 1|2, "hallucination", ...}. The reward-model
//     reader of llava-rlhf/LLaVA-RLHF (RLHF/data_utils/data_utils_rm.py at 830a083) loads the file with json.load
//     (line 153), unwraps a conversation nested in a list (line 81), puts output_1/output_2's "value" in place of
//     the last turn, a "gpt" one (lines 92-93, 111), and maps preference 1|2 to 0|1 (line 71). Here the question is
//     the last human turn without its "<image>" marker and the candidates are [output_1.value, output_2.value].
// Other fields are kept and written back out (so `preference` reaches plugins/benchmarks/judge_agreement).
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mmr::annotate {

// HelpSteer's five attributes, 0-4 each, in the order the rubrics ask for them.
inline const std::array<const char*, 5> kAttributes = {"Helpfulness", "Correctness", "Coherence", "Complexity",
                                                        "Verbosity"};
using Scores = std::map<std::string, int>;  // attribute -> 0..4

// rubric.txt (per_candidate) and rubric_all_candidates.txt (per_prompt) as built into the plugin.
extern const char* const kDefaultRubric;
extern const char* const kAllCandidatesRubric;

enum class RequestForm { PerPrompt, PerCandidate };

// A rubric must contain the placeholders of its form ({question} and {response} per candidate; {question} and
// {candidates} per prompt, and not {response}); ConfigError naming `rubric_name` and the form otherwise.
void check_rubric(std::string_view rubric, const std::string& rubric_name);
void check_rubric(std::string_view rubric, const std::string& rubric_name, RequestForm form);
bool wants_reference(std::string_view rubric);

// The per-candidate rubric with {question}, {response} and (when present) {reference} replaced, texts inserted as
// they are, braces included. {reference} is the row's `reference` answer, for reference-guided grading as
// MT-Bench's math prompts do it.
std::string build_prompt(std::string_view rubric, std::string_view question, std::string_view response,
                         std::string_view reference = {});
// The per-prompt rubric with {question}, {candidates} (each response between "[Candidate k]" and
// "[End of Candidate k]" lines, numbered from 1), {num_candidates} and {reference} replaced.
std::string build_all_candidates_prompt(std::string_view rubric, std::string_view question,
                                        const std::vector<std::string>& responses, std::string_view reference = {});
// Appended to a request when a reply could not be read and it is asked again. The attempt number makes each retry a
// request of its own, so the judgment cache (keyed by the request) neither answers it with the unreadable reply nor
// asks it twice on a rerun.
std::string retry_note(int attempt);

// "Helpfulness: 3" ... per attribute (case-insensitive, the first line naming the attribute, optional markdown
// '*' around the name); nullopt unless all five are present as a single digit 0-4.
std::optional<Scores> parse_scores(std::string_view reply);
// The scores of `n` candidates from a per-prompt reply: after the last line "[Scores]" (reasoning may come before
// it), only blank lines and exactly one line "Candidate k: Helpfulness:d,Correctness:d,Coherence:d,Complexity:d,
// Verbosity:d" for each k in 1..n (attributes in any order, each once; d a single digit 0-4; spaces around ':' and
// ',' and markdown '*', '#', '`', '-' at a line's ends allowed). Anything else — no marker, a candidate missing,
// repeated or out of range, a score of 5 or 3.5, prose after or inside the block — gives nullopt.
std::optional<std::vector<Scores>> parse_all_candidates_scores(std::string_view reply, size_t n);

struct CandidateRow {
  int line = 0;                        // where the row starts in the file
  nlohmann::json row;                  // as read (a LLaVA-RLHF row gains "question" when written back)
  std::string question;
  std::string image;                   // the row's "image" as written ("" when it has none)
  std::string reference;               // the row's "reference" answer ("" when it has none)
  std::vector<std::string> responses;  // in order
};
// Throws IoError / DataError naming file:line and the field.
std::vector<CandidateRow> read_candidate_rows(const std::string& path);

}  // namespace mmr::annotate
