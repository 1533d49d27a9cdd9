// The `annotate` stage: a judge scores every candidate response on HelpSteer's five attributes (Helpfulness,
// Correctness, Coherence, Complexity, Verbosity; 0-4) and the stage writes the scored-candidates JSONL that the
// `scored_candidates` dataset reads — the paper's distillation step, with any judge in place of Gemini.
//
//   - {name: annotate, algorithm: annotate, candidates: ${artifact:sample/candidates}, judge: {...}}
//
// By default (`request: per_prompt`) the judge sees the question, every candidate of the row, numbered, and the image
// with `show_image`, in one request (rubric_all_candidates.txt), reasons, then gives the five scores of each
// candidate in the strict format parse_all_candidates_scores reads: the authors' way (annotate.h cites their
// scripts). `request: per_candidate` asks one request per candidate with rubric.txt instead.
//
// An algorithm-kind plugin: it is a step of the alignment pipeline (sample → annotate → train), consumes the
// `sample` stage's candidates and produces training data; it measures nothing about a model, so it is not a
// benchmark. A reply that cannot be read is counted (judge/unparseable) and asked again up to `max_retries` times,
// each retry a request of its own (retry_note): the judgment cache is keyed by the request, so the same request
// would only return the same unreadable reply. After the last retry its candidates are left out of the output
// (`candidates_unparseable`, `requests_unscored`); a row left with no scored candidate is counted and left out too,
// and so is a candidate whose response is empty (`candidates_empty`: the scored-candidates format needs a text).
// Every judgment goes through the results store's cache, so a rerun asks nothing twice.
//
// With `show_image`, a row's image (relative to `image_folder`) is sent with each of its requests, for a judge that
// sees images (a vision model behind openai_compatible, `runner serve`, local_model with llava); the rubrics cover
// both cases.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/judging/judging.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/strings.h"
#include "plugins/algorithms/annotate/annotate.h"

namespace mmr::annotate {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string candidates;
  YAML::Node judge;
  std::string request;
  std::string rubric;
  int64_t max_tokens = 0;
  int64_t max_retries = 0;
  double temperature = 0;
  int64_t batch_size = 0;
  bool show_image = false;
  std::string image_folder;

  RequestForm form() const { return request == "per_candidate" ? RequestForm::PerCandidate : RequestForm::PerPrompt; }

  void bind(OptionBinder& o) {
    o.required("candidates", &candidates, "candidate rows, JSONL or a JSON array: {id, image, question, candidates: "
               "[{response}...]}, or LLaVA-RLHF human-preference rows {conversations, output_1, output_2, ...}",
               "path");
    o.required("judge", &judge, "the judge: a judge plugin name or a map {plugin: openai_compatible, ...}",
               "judge");
    o.one_of("request", &request, "per_prompt", {"per_prompt", "per_candidate"},
             "all candidates of a row in one request, reasoning before the scores (the authors' way), or one request "
             "per candidate");
    o.bind("rubric", &rubric, "", "a rubric prompt file for the request form: {question} and {candidates} per "
                                  "prompt ({num_candidates} optional), {question} and {response} per candidate; "
                                  "{reference} (the row's reference answer) optional in both; default: the built-in "
                                  "rubric_all_candidates.txt or rubric.txt", "path");
    o.bind("max_tokens", &max_tokens, 0, "max tokens of a judge reply; 0: 1800 per prompt (the reasoning, then the "
                                         "scores; the authors' GPT-4V scoring script), 64 per candidate");
    o.check(max_tokens >= 0, "max_tokens", "expected 0 (the request form's default) or more");
    o.bind("max_retries", &max_retries, 2, "times an unparseable reply is asked again (each retry a new request, so "
                                           "not answered from the cache) before its candidates are left unscored");
    o.check(max_retries >= 0, "max_retries", "expected 0 or more");
    o.bind("temperature", &temperature, 0.0, "judge temperature");
    o.bind("batch_size", &batch_size, 64, "requests handed to the judge at once (it bounds its own concurrency)");
    o.bind("show_image", &show_image, false, "send each row's image with its prompts (for judges that see images)");
    o.bind("image_folder", &image_folder, "", "folder that rows' relative image paths are relative to", "path");
  }

  // findalexli/SteerMLLM RLHF/gpt4_ratings/step1gpt4v.py:192 ("max_tokens": 1800) for the reply with reasoning.
  int64_t reply_tokens() const { return max_tokens > 0 ? max_tokens : form() == RequestForm::PerPrompt ? 1800 : 64; }
};

// The rubric text (the form's built-in one unless `rubric` names a file), checked for the form's placeholders.
std::string load_rubric(const Config& cfg) {
  const bool per_prompt = cfg.form() == RequestForm::PerPrompt;
  std::string rubric = per_prompt ? kAllCandidatesRubric : kDefaultRubric;
  if (!cfg.rubric.empty()) {
    try {
      rubric = read_file(cfg.rubric);
    } catch (const IoError&) {
      throw IoError(fmt::format("option 'rubric': cannot read '{}'", cfg.rubric));
    }
  }
  const char* built_in = per_prompt ? "built-in rubric_all_candidates.txt" : "built-in rubric.txt";
  check_rubric(rubric, cfg.rubric.empty() ? built_in : cfg.rubric, cfg.form());
  return rubric;
}

// The image a row's prompts show: none unless `show_image`; relative to `image_folder`; it must exist.
std::vector<std::string> images_of(const Config& cfg, const CandidateRow& row) {
  if (!cfg.show_image || row.image.empty()) return {};
  fs::path image(row.image);
  if (image.is_relative() && !cfg.image_folder.empty()) image = fs::path(cfg.image_folder) / image;
  if (!fs::is_regular_file(image))
    throw DataError(fmt::format("{}:{}: image '{}' does not exist (option 'image_folder': '{}')", cfg.candidates,
                                row.line, image.string(), cfg.image_folder));
  return {image.string()};
}

// One judge request: a row and the candidates it scores (the row's non-empty ones per prompt, one per candidate).
struct Job {
  size_t row;
  std::vector<size_t> candidates;
  JudgeRequest request;  // the first attempt's
};
struct Jobs {
  std::vector<Job> jobs;
  int64_t empty = 0;  // candidates with no text: not sent, and left out of the output
};

// The candidates of a row worth asking about. A sampled model may end at once; the scored-candidates format needs
// a text (an empty one is a bad row there), so such a candidate is counted (`candidates_empty`) and left out.
std::vector<size_t> non_empty(const CandidateRow& row, int64_t& empty) {
  std::vector<size_t> out;
  for (size_t c = 0; c < row.responses.size(); ++c) {
    if (python_strip(row.responses[c]).empty()) ++empty;
    else out.push_back(c);
  }
  return out;
}

// Row r's requests: one with all its non-empty candidates (per prompt) or one per candidate.
void add_jobs(const Config& cfg, const std::string& rubric, size_t r, const CandidateRow& row, Jobs& out) {
  const std::vector<size_t> sent = non_empty(row, out.empty);
  const JudgeRequest base{"", "", cfg.temperature, cfg.reply_tokens(), images_of(cfg, row)};
  if (cfg.form() == RequestForm::PerCandidate) {
    for (size_t c : sent) {
      out.jobs.push_back({r, {c}, base});
      out.jobs.back().request.user = build_prompt(rubric, row.question, row.responses[c], row.reference);
    }
  } else if (!sent.empty()) {
    std::vector<std::string> responses;
    for (size_t c : sent) responses.push_back(row.responses[c]);
    out.jobs.push_back({r, sent, base});
    out.jobs.back().request.user = build_all_candidates_prompt(rubric, row.question, responses, row.reference);
  }
}

Jobs build_jobs(const Config& cfg, const std::string& rubric, const std::vector<CandidateRow>& rows) {
  Jobs out;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (wants_reference(rubric) && rows[r].reference.empty())
      throw DataError(fmt::format("{}:{}: the rubric grades against {{reference}} and this row has no \"reference\" "
                                  "answer (the sample stage writes it for conversation rows)", cfg.candidates,
                                  rows[r].line));
    add_jobs(cfg, rubric, r, rows[r], out);
  }
  return out;
}

// Asks the judge in batches of `batch_size`, with progress and Ctrl-C checks between batches.
std::vector<std::string> ask_all(StageContext& ctx, JudgeClient& judge, const std::vector<JudgeRequest>& requests,
                                 int64_t batch_size, int attempt) {
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, batch_size));
  std::vector<std::string> replies;
  const std::string label = attempt == 0 ? "annotate" : fmt::format("annotate retry {}", attempt);
  auto progress = ctx.progress(label, static_cast<int64_t>(requests.size()));
  for (size_t start = 0; start < requests.size(); start += batch) {
    if (ctx.stop_requested()) throw Interrupted();
    const auto end = requests.begin() + static_cast<std::ptrdiff_t>(std::min(requests.size(), start + batch));
    const std::vector<JudgeRequest> part(requests.begin() + static_cast<std::ptrdiff_t>(start), end);
    for (auto& reply : judge.ask(part)) replies.push_back(std::move(reply));
    progress->advance(static_cast<int64_t>(part.size()));
  }
  progress->finish();
  return replies;
}

std::optional<std::vector<Scores>> parse_reply(RequestForm form, const std::string& reply, size_t n) {
  if (form == RequestForm::PerPrompt) return parse_all_candidates_scores(reply, n);
  auto scores = parse_scores(reply);
  if (!scores) return std::nullopt;
  return std::vector<Scores>{*scores};
}

// The parsed scores of every job (nullopt: unreadable after every retry) and the number of retries sent.
struct Replies {
  std::vector<std::optional<std::vector<Scores>>> scores;
  int64_t retries = 0;
};
Replies ask_with_retries(StageContext& ctx, JudgeClient& judge, const Config& cfg,
                         const std::vector<CandidateRow>& rows, const std::vector<Job>& jobs) {
  Replies out;
  out.scores.resize(jobs.size());
  std::vector<size_t> pending(jobs.size());
  for (size_t j = 0; j < jobs.size(); ++j) pending[j] = j;
  for (int attempt = 0; !pending.empty() && attempt <= cfg.max_retries; ++attempt) {
    std::vector<JudgeRequest> requests;
    for (size_t j : pending) requests.push_back(jobs[j].request);
    if (attempt > 0)
      for (JudgeRequest& r : requests) r.user += retry_note(attempt);
    out.retries += attempt > 0 ? static_cast<int64_t>(pending.size()) : 0;
    const std::vector<std::string> replies = ask_all(ctx, judge, requests, cfg.batch_size, attempt);
    std::vector<size_t> unread;
    for (size_t i = 0; i < pending.size(); ++i) {
      const Job& job = jobs[pending[i]];
      out.scores[pending[i]] = parse_reply(cfg.form(), replies[i], job.candidates.size());
      if (out.scores[pending[i]]) continue;
      judge.count_unparseable();
      unread.push_back(pending[i]);
      ctx.log().debug("annotate: row at {}:{} (attempt {}): unparseable reply: {}", cfg.candidates,
                      rows[job.row].line, attempt + 1, replies[i].substr(0, 200));
    }
    pending = std::move(unread);
  }
  return out;
}

// The scored candidates of every row, and the sums and count behind the mean/<attribute> metrics.
struct Scored {
  std::vector<nlohmann::json> candidates;  // per row: [{response, scores}, ...]
  std::map<std::string, double> sums;
  int64_t n = 0, sent = 0, requests_unscored = 0;
};
Scored collect(const std::vector<CandidateRow>& rows, const std::vector<Job>& jobs, const Replies& replies) {
  Scored out;
  out.candidates.assign(rows.size(), nlohmann::json::array());
  for (size_t j = 0; j < jobs.size(); ++j) {
    out.sent += static_cast<int64_t>(jobs[j].candidates.size());
    if (!replies.scores[j]) {
      ++out.requests_unscored;
      continue;
    }
    for (size_t k = 0; k < jobs[j].candidates.size(); ++k) {
      const Scores& scores = (*replies.scores[j])[k];
      nlohmann::json s = nlohmann::json::object();
      for (const char* a : kAttributes) s[a] = scores.at(a);
      for (const auto& [name, value] : scores) out.sums[name] += value;
      const std::string& response = rows[jobs[j].row].responses[jobs[j].candidates[k]];
      out.candidates[jobs[j].row].push_back({{"response", response}, {"scores", s}});
      ++out.n;
    }
  }
  return out;
}

class Annotate : public Algorithm {
 public:
  using Config = annotate::Config;

  explicit Annotate(const Options&) {}
  static const char* summary() {
    return "a judge scores candidate responses on the five HelpSteer attributes (0-4), all candidates of a prompt "
           "in one request by default, into scored-candidates JSONL";
  }

  void run(StageContext& ctx) override {
    const Config cfg = read_options<Config>(ctx.options());
    const std::string rubric = load_rubric(cfg);
    const std::vector<CandidateRow> rows = read_candidate_rows(cfg.candidates);
    JudgeClient judge(ctx, cfg.judge);
    const Jobs built = build_jobs(cfg, rubric, rows);
    const Replies replies = ask_with_retries(ctx, judge, cfg, rows, built.jobs);
    const Scored scored = collect(rows, built.jobs, replies);
    write(ctx, rows, scored);
    ctx.log_metric("candidates_empty", static_cast<double>(built.empty));
    ctx.log_metric("retries", static_cast<double>(replies.retries));
    ctx.log_metric("requests_unscored", static_cast<double>(scored.requests_unscored));
    if (built.empty > 0)
      ctx.log().warn("annotate: {} candidate(s) with an empty response were left out (not graded)", built.empty);
    if (scored.requests_unscored > 0)
      ctx.log().warn("annotate: {} request(s) still unparseable after {} retries; their candidates were left out",
                     scored.requests_unscored, cfg.max_retries);
    judge.log_metrics();
  }

 private:
  // Writes scored_candidates.jsonl (rows with no scored candidate left out) and the stage's metrics.
  static void write(StageContext& ctx, const std::vector<CandidateRow>& rows, const Scored& scored) {
    std::string out;
    int64_t rows_written = 0, rows_empty = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (scored.candidates[r].empty()) {
        ++rows_empty;
        continue;
      }
      nlohmann::json row = rows[r].row;
      if (!row.contains("question")) row["question"] = rows[r].question;  // a LLaVA-RLHF row's, for the dataset
      row["candidates"] = scored.candidates[r];
      out += row.dump() + "\n";
      ++rows_written;
    }
    const fs::path path = ctx.stage_dir() / "scored_candidates.jsonl";
    write_file_atomic(path, out);
    ctx.add_artifact("scored_candidates", path);
    ctx.log_metric("rows_in", static_cast<double>(rows.size()));
    ctx.log_metric("candidates_in", static_cast<double>(scored.sent));
    ctx.log_metric("candidates_scored", static_cast<double>(scored.n));
    ctx.log_metric("candidates_unparseable", static_cast<double>(scored.sent - scored.n));
    ctx.log_metric("rows_written", static_cast<double>(rows_written));
    ctx.log_metric("rows_without_scores", static_cast<double>(rows_empty));
    for (const char* a : kAttributes)
      if (scored.n > 0) ctx.log_metric(std::string("mean/") + a, scored.sums.at(a) / static_cast<double>(scored.n));
    if (rows_empty > 0)
      ctx.log().warn("annotate: {} row(s) had no candidate with a parseable judge reply and were left out", rows_empty);
  }
};

}  // namespace
}  // namespace mmr::annotate

MMR_PLUGIN(Algorithm, "annotate", "2.0.0", mmr::annotate::Annotate)
