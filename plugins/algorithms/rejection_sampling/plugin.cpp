// The `rejection_sampling` algorithm: from several scored responses per image-question keep the best one, then
// supervised fine-tuning on those (the paper's 5,034 rows). "Best" is the highest sum of `score_attributes`
// (default Helpfulness + Correctness + Coherence, the paper's chosen-response rule), ties to the earlier
// candidate; questions whose best falls under `min_score` are dropped. The kept rows are written as conversation
// rows (artifact `selected`) so the choice can be inspected or reused.
#include <fmt/format.h>

#include "common.h"
#include "core/lib/data/pipeline.h"
#include "core/api/error.h"

namespace mmr::train {
namespace {

class RejectionSampling : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data, eval_data;
    std::vector<std::string> score_attributes;
    double min_score;
    TrainConfig train{sft_defaults()};
    void bind(OptionBinder& o) {
      bind_model(o, &model);
      bind_data(o, &data, "scored candidates");
      bind_eval_data(o, &eval_data);
      o.bind("score_attributes", &score_attributes, std::vector<std::string>{"Helpfulness", "Correctness", "Coherence"},
             "attributes summed to rank the candidates");
      o.bind("min_score", &min_score, -1.0e300, "drop questions whose best candidate scores below this");
      train.bind(o, sft_defaults());
      const auto known = attribute_names();
      o.check(!score_attributes.empty(), "score_attributes", "empty");
      for (const auto& a : score_attributes)
        o.check(std::find(known.begin(), known.end(), a) != known.end(), "score_attributes",
                fmt::format("unknown attribute '{}' (expected some of {})", a, fmt::join(known, ", ")));
    }
  };
  explicit RejectionSampling(const Options& o) : RejectionSampling(read_options<Config>(o)) {}
  explicit RejectionSampling(const Config& c)
      : config_(c.train), attributes_(c.score_attributes), min_score_(c.min_score) {}
  static const char* summary() { return "best-of-N by attribute scores, then supervised fine-tuning"; }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    std::shared_ptr<Plugin> holder;
    const auto rows = load_dataset(ctx, "data", "scored_candidates", holder).scored_candidates_rows(dctx);
    data::RowSet selected;
    selected.kind = RowKind::Conversation;
    std::vector<ChatSample> train;
    int64_t below = 0;
    for (const auto& row : rows) {
      if (row.candidates.empty()) continue;
      size_t best = 0;
      double best_score = -1e300;
      for (size_t i = 0; i < row.candidates.size(); ++i) {
        double s = 0;
        for (const auto& a : attributes_) {
          auto it = row.candidates[i].scores.find(a);
          if (it == row.candidates[i].scores.end())
            throw DataError(fmt::format("{}:{}: candidate {} has no '{}' score", row.origin.file, row.origin.row, i, a));
          s += it->second;
        }
        if (s > best_score) best_score = s, best = i;
      }
      if (best_score < min_score_) {
        ++below;
        continue;
      }
      ConversationRow c;
      c.id = row.id;
      c.images = row.images;
      c.turns = {{"human", row.question}, {"gpt", row.candidates[best].response}};
      c.origin = row.origin;
      c.extra = {{"score", best_score}, {"candidate", best}};
      train.push_back(to_sample(c));
      selected.conversations.push_back(std::move(c));
    }
    ctx.log_metric("data/questions", static_cast<double>(rows.size()));
    ctx.log_metric("data/selected", static_cast<double>(train.size()));
    ctx.log_metric("data/below_min_score", static_cast<double>(below));
    const auto path = ctx.stage_dir() / "selected.jsonl";
    data::write_rows(selected, path);
    ctx.add_artifact("selected", path);
    ctx.log().info("rejection sampling: kept the best of each of {} questions ({} below min_score)", train.size(), below);

    run_sft(ctx, *model, train, held_out_conversations(ctx), config_);
  }

 private:
  TrainConfig config_;
  std::vector<std::string> attributes_;
  double min_score_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "rejection_sampling", "1.0", mmr::train::RejectionSampling)
