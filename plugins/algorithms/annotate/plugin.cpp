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
// candidates are left out of the output; a row left with no scored candidate is counted and left out too.
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
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/lib/judging/judging.h"
#include "core/api/plugin_api.h"
#include "plugins/algorithms/annotate/annotate.h"

namespace mmr::annotate {
namespace {

namespace fs = std::filesystem;

class Annotate : public Algorithm {
 public:
  explicit Annotate(const Options&) {}
  static const char* summary() {
    return "a judge scores candidate responses on the five HelpSteer attributes (0-4) into scored-candidates JSONL";
  }
  static OptionSchema option_schema() {
    return {
        {"candidates", "path", "", "candidate rows JSONL: {id, image, question, candidates: [{response}...]}", true},
        {"judge", "any", "", "the judge: a judge plugin name or a map {plugin: openai_compatible, ...}", true},
        {"rubric", "path", "", "a rubric prompt file with {question} and {response} (default: the built-in "
                               "rubric.txt)"},
        {"max_tokens", "int", "64", "max tokens of a judge reply (five short lines)"},
        {"temperature", "float", "0.0", "judge temperature"},
        {"batch_size", "int", "64", "requests handed to the judge at once (it bounds its own concurrency)"},
        {"show_image", "bool", "false", "send each row's image with its prompts (for judges that see images)"},
        {"image_folder", "path", "", "folder that rows' relative image paths are relative to"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    std::string rubric = kDefaultRubric, rubric_name = "built-in rubric.txt";
    if (o.has("rubric")) {
      rubric_name = o.get<std::string>("rubric");
      std::ifstream in(rubric_name, std::ios::binary);
      if (!in) throw IoError(fmt::format("option 'rubric': cannot read '{}'", rubric_name));
      std::stringstream ss;
      ss << in.rdbuf();
      rubric = ss.str();
    }
    check_rubric(rubric, rubric_name);
    const std::vector<CandidateRow> rows = read_candidate_rows(o.get<std::string>("candidates"));
    JudgeClient judge(ctx, o.node()["judge"]);

    struct Item {
      size_t row, candidate;
    };
    std::vector<Item> items;
    std::vector<JudgeRequest> requests;
    const bool show_image = o.get<bool>("show_image");
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<std::string> images;
      if (show_image && !rows[r].image.empty()) {
        fs::path image(rows[r].image);
        if (image.is_relative() && o.has("image_folder")) image = fs::path(o.get<std::string>("image_folder")) / image;
        if (!fs::is_regular_file(image))
          throw DataError(fmt::format("{}:{}: image '{}' does not exist (option 'image_folder': '{}')",
                                      o.get<std::string>("candidates"), rows[r].line, image.string(),
                                      o.get<std::string>("image_folder", std::string())));
        images.push_back(image.string());
      }
      for (size_t c = 0; c < rows[r].responses.size(); ++c) {
        items.push_back({r, c});
        requests.push_back({"", build_prompt(rubric, rows[r].question, rows[r].responses[c]),
                            o.get<double>("temperature"), o.get<int64_t>("max_tokens"), images});
      }
    }
    const size_t batch = static_cast<size_t>(std::max<int64_t>(1, o.get<int64_t>("batch_size")));
    std::vector<std::string> replies;
    auto progress = ctx.progress("annotate", static_cast<int64_t>(requests.size()));
    for (size_t start = 0; start < requests.size(); start += batch) {
      if (ctx.stop_requested()) throw Interrupted();
      const std::vector<JudgeRequest> part(requests.begin() + static_cast<std::ptrdiff_t>(start),
                                           requests.begin() + static_cast<std::ptrdiff_t>(std::min(requests.size(), start + batch)));
      for (auto& reply : judge.ask(part)) replies.push_back(std::move(reply));
      progress->advance(static_cast<int64_t>(part.size()));
    }
    progress->finish();

    std::vector<nlohmann::ordered_json> scored(rows.size(), nlohmann::ordered_json::array());
    std::map<std::string, double> sums;
    int64_t n_scored = 0;
    for (size_t i = 0; i < items.size(); ++i) {
      const auto scores = parse_scores(replies[i]);
      if (!scores) {
        judge.count_unparseable();
        ctx.log().debug("annotate: row at {}:{}, candidate {}: unparseable reply: {}", o.get<std::string>("candidates"),
                        rows[items[i].row].line, items[i].candidate, replies[i].substr(0, 200));
        continue;
      }
      nlohmann::ordered_json cand = {{"response", rows[items[i].row].responses[items[i].candidate]}};
      for (const auto& [name, value] : *scores) sums[name] += value;
      nlohmann::ordered_json s = nlohmann::ordered_json::object();
      for (const char* a : kAttributes) s[a] = scores->at(a);
      cand["scores"] = s;
      scored[items[i].row].push_back(cand);
      ++n_scored;
    }
    std::string out;
    int64_t rows_written = 0, rows_empty = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      if (scored[r].empty()) {
        ++rows_empty;
        continue;
      }
      nlohmann::ordered_json row = rows[r].row;
      row["candidates"] = scored[r];
      out += row.dump() + "\n";
      ++rows_written;
    }
    const fs::path path = ctx.stage_dir() / "scored_candidates.jsonl";
    const fs::path tmp = path.string() + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary);
      f << out;
      if (!f) throw IoError("cannot write '" + tmp.string() + "'");
    }
    fs::rename(tmp, path);
    ctx.add_artifact("scored_candidates", path);

    ctx.log_metric("rows_in", static_cast<double>(rows.size()));
    ctx.log_metric("candidates_in", static_cast<double>(items.size()));
    ctx.log_metric("candidates_scored", static_cast<double>(n_scored));
    ctx.log_metric("candidates_unparseable", static_cast<double>(items.size() - static_cast<size_t>(n_scored)));
    ctx.log_metric("rows_written", static_cast<double>(rows_written));
    ctx.log_metric("rows_without_scores", static_cast<double>(rows_empty));
    for (const char* a : kAttributes)
      if (n_scored > 0) ctx.log_metric(std::string("mean/") + a, sums[a] / static_cast<double>(n_scored));
    judge.log_metrics();
    if (rows_empty > 0)
      ctx.log().warn("annotate: {} row(s) had no candidate with a parseable judge reply and were left out", rows_empty);
  }
};

}  // namespace
}  // namespace mmr::annotate

MMR_PLUGIN(Algorithm, "annotate", "1.0.0", mmr::annotate::Annotate)
