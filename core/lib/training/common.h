// What the algorithm plugins share besides the loop: loading the model and the rows a stage names, turning rows
// into conversations, supervised fine-tuning over conversations (every SFT-style algorithm ends in it), the pair
// log-probs, and the `model` / `data` option declarations.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/api/dataset_api.h"
#include "core/api/model_api.h"
#include "core/api/plugin_api.h"
#include "trainer.h"

namespace mmr::train {

// The model plugin named by the stage option `key` (a name, or a map with `plugin:` and its options), which must
// be a LanguageModel. The returned pointer keeps the plugin object (and its library) alive.
// A map node without `seed` gets the trial seed (new LoRA weights differ per seed of a grid).
std::shared_ptr<LanguageModel> load_model(StageContext& ctx, const std::string& key = "model");

// The dataset named by the stage option `key`: a row file path (read with `default_plugin`, e.g. the `rows`
// artifact of a data stage) or a dataset node (`{plugin: preference, file: ..., transforms: ...}`).
DatasetProvider& load_dataset(StageContext& ctx, const std::string& key, const std::string& default_plugin,
                              std::shared_ptr<Plugin>& holder);

// Rows as conversations. Turns other than human/gpt (a "system" turn) are dropped: the vicuna_v1 template has
// its own system prompt.
ChatSample to_sample(const std::vector<Turn>& turns, const std::vector<std::string>& images);
ChatSample to_sample(const ConversationRow& row);
// A preference pair's side: the prompt turns and that reply (or the side's whole conversation when the row gave one).
ChatSample side_sample(const PreferenceRow& row, bool chosen);

// Masks every label but the last reply's (the tokens a preference loss compares), so a multi-turn prompt's earlier
// assistant turns do not count.
EncodedSample keep_last_reply(EncodedSample sample);

// Token-mean cross-entropy over all labelled tokens of `samples`, in batches, without gradients.
double mean_lm_loss(LanguageModel& model, const std::vector<EncodedSample>& samples, int64_t batch_size);

// Supervised fine-tuning on conversations: LM loss on the assistant replies (token mean per micro-batch, as
// LLaVA's trainer). With held-out samples, records eval/loss_before and eval/loss (after training).
FitResult run_sft(StageContext& ctx, LanguageModel& model, const std::vector<ChatSample>& train,
                  const std::vector<ChatSample>& held_out, const TrainConfig& config);

// The held-out rows of the `eval_data` option as conversations (empty when the option is absent).
std::vector<ChatSample> held_out_conversations(StageContext& ctx, const std::string& default_plugin = "llava_json");

// The authors' defaults for the SFT-style algorithms: lr 4e-4, 3 epochs, batch 16 x 2.
TrainDefaults sft_defaults();

// A JSONL output written row by row so an interrupted stage can continue: the rows already in
// <final>.partial.jsonl whose ids match the expected ones in order (a prefix, cut to whole blocks of `block` rows)
// are kept, a torn tail is dropped; finish() renames the file to its final name.
class ResumableJsonl {
 public:
  ResumableJsonl(std::filesystem::path final_path, const std::vector<std::string>& ids, size_t block = 1);
  size_t done() const { return done_; }
  // The rows kept from an earlier run, as written (done() of them).
  const std::vector<std::string>& kept() const { return kept_; }
  void write(const nlohmann::json& row) { out_ << row.dump() << "\n"; }
  void flush() { out_.flush(); }
  void finish();

 private:
  std::filesystem::path final_, partial_;
  std::ofstream out_;
  std::vector<std::string> kept_;
  size_t done_ = 0;
};

// The options the training algorithms share, declared once here: `model` (required), `data` (required; `what`
// says which rows) and `eval_data` (optional held-out rows).
void bind_model(OptionBinder& o, YAML::Node* model);
void bind_data(OptionBinder& o, YAML::Node* data, const std::string& what);
void bind_eval_data(OptionBinder& o, YAML::Node* eval_data);
// `prefix_sharing` (off, on, shared_dropout) of the stages that compute preference pairs' log-probs: see pair_logps.
void bind_prefix_sharing(OptionBinder& o, std::string* prefix_sharing);

// Response log-probs of both sides of preference pairs, in one right-padded batch (chosen rows first, then
// rejected): the one place a pair's log-probs are computed (DPO's policy and reference, the reference_logps stage).
struct PairSides {
  SequenceLogps chosen, rejected;
  int64_t tokens = 0;  // positions in the batch that are not padding
};
// `prefix_sharing` (off, on, shared_dropout): on, each pair's prompt is computed once for both sides
// (LanguageModel::shared_prompt_logps), after checking that both rows really begin with the same prompt.
PairSides pair_logps(LanguageModel& model, const std::vector<const EncodedSample*>& chosen,
                     const std::vector<const EncodedSample*>& rejected, bool per_token = false,
                     const std::string& prefix_sharing = "off");
// The prompt both rows of a pair begin with: the tokens before the first labelled one of either row. DataError
// naming `pair` when the rows differ there, or in their images, or when an image comes after it.
int64_t shared_prompt_tokens(const EncodedSample& chosen, const EncodedSample& rejected, size_t pair);

}  // namespace mmr::train
