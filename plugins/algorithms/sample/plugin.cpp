// The `sample` stage: generates N candidate responses per prompt with the current model (the paper sampled 4 per
// question from LLaVA-1.5-13B) into a candidates file in the scored-candidates format without scores
// ({id, image, question, candidates: [{response}]}), ready for a judge to annotate (the `annotate` stage) and then
// for rejection_sampling, steerlm or pair construction (scored_candidates with build_pairs).
//
// Prompts come from any row kind: a preference pair's prompt, a conversation up to its last human turn (the
// answer after it, when there is one, is written as the row's `reference`), or a scored-candidates question. Candidate k of a batch is sampled with seed (trial seed, batch, k), so the output does
// not depend on where a run was interrupted: finished batches are kept in candidates.partial.jsonl and skipped.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "common.h"
#include "core/api/error.h"

namespace mmr::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct Prompt {
  std::string id;
  std::vector<std::string> images;
  std::string question;   // the last human turn
  std::string reference;  // the answer that follows it in a conversation row ("" when none does)
  ChatSample sample;      // the conversation up to and including it
};

std::vector<Prompt> prompts_of(DatasetProvider& data, DataContext& dctx) {
  std::vector<Prompt> out;
  auto from_turns = [&](const std::string& id, const std::vector<Turn>& turns, const std::vector<std::string>& images) {
    std::vector<Turn> upto;
    size_t last_human = turns.size();
    for (size_t i = 0; i < turns.size(); ++i)
      if (turns[i].from == "human") last_human = i;
    if (last_human == turns.size()) return;  // nothing to answer
    upto.assign(turns.begin(), turns.begin() + static_cast<std::ptrdiff_t>(last_human) + 1);
    const std::string reference = last_human + 1 < turns.size() ? turns[last_human + 1].value : "";
    Prompt p{id, images, turns[last_human].value, reference, to_sample(upto, images)};
    out.push_back(std::move(p));
  };
  if (data.provides(RowKind::Preference)) {
    for (const auto& r : data.preference_rows(dctx)) from_turns(r.id, r.prompt, r.images);
  } else if (data.provides(RowKind::Conversation)) {
    for (const auto& r : data.conversation_rows(dctx)) from_turns(r.id, r.turns, r.images);
  } else {
    for (const auto& r : data.scored_candidates_rows(dctx)) from_turns(r.id, {{"human", r.question}}, r.images);
  }
  return out;
}

class Sample : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data;
    int64_t num_candidates, batch_size;
    GenerationConfig gen;
    void bind(OptionBinder& o) {
      o.required("model", &model, "the model to sample from", "model");
      bind_data(o, &data, "prompts (preference, conversation or scored-candidates rows)");
      o.bind("num_candidates", &num_candidates, 4, "responses per prompt");
      // The authors' sampling (mllm-dpo scripts/v1_5/eval/llava_sampling.sh): `for i in {0..3}` runs of
      // model_vqa_loader with `--temperature 1.2 --conv-mode vicuna_v1 --max_new_tokens 1024`, top-p unset.
      o.bind("temperature", &gen.temperature, 1.2, "sampling temperature (0: greedy, every candidate identical)");
      o.bind("top_p", &gen.top_p, 1.0, "nucleus sampling");
      o.bind("top_k", &gen.top_k, 0, "top-k sampling (0: off)");
      o.bind("max_new_tokens", &gen.max_new_tokens, 1024, "longest response");
      o.bind("batch_size", &batch_size, 8, "prompts per generation batch");
      o.check(num_candidates >= 1, "num_candidates", "must be at least 1");
      o.check(batch_size >= 1, "batch_size", "must be at least 1");
      o.check(gen.temperature >= 0, "temperature", "must be >= 0");
    }
  };
  explicit Sample(const Options& o) : Sample(read_options<Config>(o)) {}
  explicit Sample(const Config& c) : n_(c.num_candidates), batch_size_(c.batch_size), gen_(c.gen) {}
  static const char* summary() { return "generate N candidate responses per prompt (for a judge to score)"; }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    std::shared_ptr<Plugin> holder;
    const std::vector<Prompt> prompts = prompts_of(load_dataset(ctx, "data", "preference", holder), dctx);
    if (prompts.empty()) throw DataError("stage '" + ctx.stage_name() + "': no prompts in the data");

    std::vector<std::string> ids;
    for (const auto& p : prompts) ids.push_back(p.id);
    // Whole batches only, so every batch is sampled with the same seeds as in an uninterrupted run.
    ResumableJsonl out(ctx.stage_dir() / "candidates.jsonl", ids, static_cast<size_t>(batch_size_));
    if (out.done() > 0) ctx.log().info("sample: {} of {} prompts already done, continuing", out.done(), prompts.size());

    auto progress = ctx.progress("sample", static_cast<int64_t>(prompts.size()));
    progress->advance(static_cast<int64_t>(out.done()));
    for (size_t i = out.done(); i < prompts.size(); i += static_cast<size_t>(batch_size_)) {
      const size_t end = std::min(prompts.size(), i + static_cast<size_t>(batch_size_));
      std::vector<ChatSample> batch;
      for (size_t j = i; j < end; ++j) batch.push_back(prompts[j].sample);
      std::vector<std::vector<std::string>> responses(end - i);
      for (int64_t k = 0; k < n_; ++k) {
        GenerationConfig g = gen_;
        g.seed = ctx.seed() * 1000003ULL + static_cast<uint64_t>(i) * 131ULL + static_cast<uint64_t>(k);
        const auto gens = model->generate(batch, g);
        for (size_t j = 0; j < gens.size(); ++j) responses[j].push_back(gens[j].text);
      }
      for (size_t j = i; j < end; ++j) {
        json row = {{"id", prompts[j].id}};
        if (prompts[j].images.size() == 1) row["image"] = prompts[j].images[0];  // as annotate and the datasets read it
        if (prompts[j].images.size() > 1) row["images"] = prompts[j].images;
        row["question"] = prompts[j].question;
        // The dataset's own answer, for a judge that grades against a reference (annotate's {reference}).
        if (!prompts[j].reference.empty()) row["reference"] = prompts[j].reference;
        row["candidates"] = json::array();
        for (const auto& r : responses[j - i]) row["candidates"].push_back({{"response", r}});
        out.write(row);
      }
      out.flush();
      progress->advance(static_cast<int64_t>(end - i));
      if (ctx.stop_requested()) throw Interrupted();
    }
    progress->finish();
    out.finish();
    ctx.add_artifact("candidates", ctx.stage_dir() / "candidates.jsonl");
    ctx.log_metric("prompts", static_cast<double>(prompts.size()));
    ctx.log_metric("candidates", static_cast<double>(prompts.size() * static_cast<size_t>(n_)));
  }

 private:
  int64_t n_, batch_size_;
  GenerationConfig gen_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "sample", "1.0", mmr::train::Sample)
