// The `annotate` stage: a judge scores every candidate response on HelpSteer's five attributes (Helpfulness,
// Correctness, Coherence, Complexity, Verbosity; 0-4) with the rubric prompt of rubric.txt, and the stage writes
// the scored-candidates JSONL that the `scored_candidates` dataset reads — the paper's distillation step, with any
// judge in place of Gemini.
//
//   - {name: annotate, algorithm: annotate, candidates: ${artifact:sample/candidates}, judge: {...}}
//
// An algorithm-kind plugin: it is a step of the alignment pipeline (sample → annotate → train), consumes the
// `sample` stage's candidates and produces training data; it measures nothing about a model, so it is not a
// benchmark. Replies that do not give all five scores are counted (metric `candidates_unparseable`) and those
// candidates are left out of the output; a row left with no scored candidate is counted and left out too, and so
// is a candidate whose response is empty (`candidates_empty`: the scored-candidates format needs a text).
// Every judgment goes through the results store's cache, so a rerun asks nothing twice.
//
// With `show_image`, a row's image (relative to `image_folder`) is sent with each of its prompts, for a judge that
// sees images (a vision model behind openai_compatible, `runner serve`, local_model with llava); the rubric
// covers both cases.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <filesystem>
#include <map>
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
  std::string rubric;
  int64_t max_tokens = 0;
  double temperature = 0;
  int64_t batch_size = 0;
  bool show_image = false;
  std::string image_folder;

  void bind(OptionBinder& o) {
    o.required("candidates", &candidates, "candidate rows JSONL: {id, image, question, candidates: [{response}...]}",
               "path");
    o.required("judge", &judge, "the judge: a judge plugin name or a map {plugin: openai_compatible, ...}");
    o.bind("rubric", &rubric, "", "a rubric prompt file with {question} and {response}, and optionally "
                                  "{reference} (the row's reference answer); default: the built-in rubric.txt",
           "path");
    o.bind("max_tokens", &max_tokens, 64, "max tokens of a judge reply (five short lines)");
    o.bind("temperature", &temperature, 0.0, "judge temperature");
    o.bind("batch_size", &batch_size, 64, "requests handed to the judge at once (it bounds its own concurrency)");
    o.bind("show_image", &show_image, false, "send each row's image with its prompts (for judges that see images)");
    o.bind("image_folder", &image_folder, "", "folder that rows' relative image paths are relative to", "path");
  }
};

// The rubric text (the built-in rubric.txt unless `rubric` names a file), checked for both placeholders.
std::string load_rubric(const Config& cfg) {
  std::string rubric = kDefaultRubric;
  if (!cfg.rubric.empty()) {
    try {
      rubric = read_file(cfg.rubric);
    } catch (const IoError&) {
      throw IoError(fmt::format("option 'rubric': cannot read '{}'", cfg.rubric));
    }
  }
  check_rubric(rubric, cfg.rubric.empty() ? "built-in rubric.txt" : cfg.rubric);
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

// One judge request per candidate, and which (row, candidate) it scores.
struct Item {
  size_t row, candidate;
};
struct Requests {
  std::vector<Item> items;
  std::vector<JudgeRequest> requests;
  int64_t empty = 0;  // candidates with no text: not sent, and left out of the output
};
Requests build_requests(const Config& cfg, const std::string& rubric, const std::vector<CandidateRow>& rows) {
  Requests out;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::vector<std::string> images = images_of(cfg, rows[r]);
    if (wants_reference(rubric) && rows[r].reference.empty())
      throw DataError(fmt::format("{}:{}: the rubric grades against {{reference}} and this row has no \"reference\" "
                                  "answer (the sample stage writes it for conversation rows)", cfg.candidates,
                                  rows[r].line));
    for (size_t c = 0; c < rows[r].responses.size(); ++c) {
      // A sampled model may end at once. The scored-candidates format needs a text (an empty one is a bad row
      // there), so such a candidate is counted (`candidates_empty`) and left out rather than graded.
      if (python_strip(rows[r].responses[c]).empty()) {
        ++out.empty;
        continue;
      }
      out.items.push_back({r, c});
      out.requests.push_back({"", build_prompt(rubric, rows[r].question, rows[r].responses[c], rows[r].reference), cfg.temperature,
                              cfg.max_tokens, images});
    }
  }
  return out;
}

// Asks the judge in batches of `batch_size`, with progress and Ctrl-C checks between batches.
std::vector<std::string> ask_all(StageContext& ctx, JudgeClient& judge, const std::vector<JudgeRequest>& requests,
                                 int64_t batch_size) {
  const size_t batch = static_cast<size_t>(std::max<int64_t>(1, batch_size));
  std::vector<std::string> replies;
  auto progress = ctx.progress("annotate", static_cast<int64_t>(requests.size()));
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

// The scored candidates of every row, and the sums and count behind the mean/<attribute> metrics.
struct Scored {
  std::vector<nlohmann::ordered_json> candidates;  // per row: [{response, scores}, ...]
  std::map<std::string, double> sums;
  int64_t n = 0;
};
Scored collect(StageContext& ctx, JudgeClient& judge, const Config& cfg, const std::vector<CandidateRow>& rows,
               const std::vector<Item>& items, const std::vector<std::string>& replies) {
  Scored out;
  out.candidates.assign(rows.size(), nlohmann::ordered_json::array());
  for (size_t i = 0; i < items.size(); ++i) {
    const auto scores = parse_scores(replies[i]);
    const CandidateRow& row = rows[items[i].row];
    if (!scores) {
      judge.count_unparseable();
      ctx.log().debug("annotate: row at {}:{}, candidate {}: unparseable reply: {}", cfg.candidates, row.line,
                      items[i].candidate, replies[i].substr(0, 200));
      continue;
    }
    nlohmann::ordered_json s = nlohmann::ordered_json::object();
    for (const char* a : kAttributes) s[a] = scores->at(a);
    for (const auto& [name, value] : *scores) out.sums[name] += value;
    out.candidates[items[i].row].push_back({{"response", row.responses[items[i].candidate]}, {"scores", s}});
    ++out.n;
  }
  return out;
}

class Annotate : public Algorithm {
 public:
  using Config = annotate::Config;

  explicit Annotate(const Options&) {}
  static const char* summary() {
    return "a judge scores candidate responses on the five HelpSteer attributes (0-4) into scored-candidates JSONL";
  }

  void run(StageContext& ctx) override {
    const Config cfg = read_options<Config>(ctx.options());
    const std::string rubric = load_rubric(cfg);
    const std::vector<CandidateRow> rows = read_candidate_rows(cfg.candidates);
    JudgeClient judge(ctx, cfg.judge);
    const Requests built = build_requests(cfg, rubric, rows);
    const std::vector<std::string> replies = ask_all(ctx, judge, built.requests, cfg.batch_size);
    const Scored scored = collect(ctx, judge, cfg, rows, built.items, replies);
    write(ctx, rows, scored, built.items.size());
    ctx.log_metric("candidates_empty", static_cast<double>(built.empty));
    if (built.empty > 0)
      ctx.log().warn("annotate: {} candidate(s) with an empty response were left out (not graded)", built.empty);
    judge.log_metrics();
  }

 private:
  // Writes scored_candidates.jsonl (rows with no scored candidate left out) and the stage's metrics.
  static void write(StageContext& ctx, const std::vector<CandidateRow>& rows, const Scored& scored, size_t n_items) {
    std::string out;
    int64_t rows_written = 0, rows_empty = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (scored.candidates[r].empty()) {
        ++rows_empty;
        continue;
      }
      nlohmann::ordered_json row = rows[r].row;
      row["candidates"] = scored.candidates[r];
      out += row.dump() + "\n";
      ++rows_written;
    }
    const fs::path path = ctx.stage_dir() / "scored_candidates.jsonl";
    write_file_atomic(path, out);
    ctx.add_artifact("scored_candidates", path);
    ctx.log_metric("rows_in", static_cast<double>(rows.size()));
    ctx.log_metric("candidates_in", static_cast<double>(n_items));
    ctx.log_metric("candidates_scored", static_cast<double>(scored.n));
    ctx.log_metric("candidates_unparseable", static_cast<double>(n_items - static_cast<size_t>(scored.n)));
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

MMR_PLUGIN(Algorithm, "annotate", "1.0.0", mmr::annotate::Annotate)
