// Shared pieces of the algorithm plugins; see common.h.
#include "common.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"

namespace mmr::train {

std::shared_ptr<LanguageModel> load_model(StageContext& ctx, const std::string& key) {
  const Options& o = ctx.options();
  if (!o.has(key)) throw ConfigError(o.where(o.node()) + "stage '" + ctx.stage_name() + "': missing option '" + key + "'");
  YAML::Node node = o.node()[key];
  if (node.IsMap() && !node["seed"]) {  // new LoRA weights follow the trial seed unless the model names its own
    node = YAML::Clone(node);
    node["seed"] = ctx.seed();
  }
  std::shared_ptr<Plugin> plugin = ctx.create(PluginKind::Model, node);
  auto* lm = dynamic_cast<LanguageModel*>(plugin.get());
  if (!lm) throw ConfigError(o.where(o.node()[key]) + "'" + key + "': this model plugin is not a language model");
  return std::shared_ptr<LanguageModel>(plugin, lm);
}

DatasetProvider& load_dataset(StageContext& ctx, const std::string& key, const std::string& default_plugin,
                              std::shared_ptr<Plugin>& holder) {
  const Options& o = ctx.options();
  if (!o.has(key)) throw ConfigError(o.where(o.node()) + "stage '" + ctx.stage_name() + "': missing option '" + key + "'");
  YAML::Node node = o.node()[key];
  if (node.IsScalar()) {
    YAML::Node spec(YAML::NodeType::Map);
    spec["plugin"] = default_plugin;
    spec["file"] = node.Scalar();
    node = spec;
  }
  holder = ctx.create(PluginKind::Dataset, node);
  return dataset_provider(*holder, key);
}

ChatSample to_sample(const std::vector<Turn>& turns, const std::vector<std::string>& images) {
  ChatSample s;
  for (const auto& t : turns)
    if (t.from == "human" || t.from == "gpt") s.turns.push_back({t.from, t.value});
  s.images = images;
  return s;
}

ChatSample to_sample(const ConversationRow& row) { return to_sample(row.turns, row.images); }

ChatSample side_sample(const PreferenceRow& row, bool chosen) {
  const Reply& r = chosen ? row.chosen : row.rejected;
  if (!r.conversation.empty()) return to_sample(r.conversation, row.images);
  ChatSample s = to_sample(row.prompt, row.images);
  s.turns.push_back({"gpt", r.text});
  return s;
}

EncodedSample keep_last_reply(EncodedSample s) {
  int64_t end = static_cast<int64_t>(s.labels.size());
  while (end > 0 && s.labels[static_cast<size_t>(end - 1)] == kIgnoreIndex) --end;
  int64_t begin = end;
  while (begin > 0 && s.labels[static_cast<size_t>(begin - 1)] != kIgnoreIndex) --begin;
  for (int64_t i = 0; i < begin; ++i) s.labels[static_cast<size_t>(i)] = kIgnoreIndex;
  return s;
}

double mean_lm_loss(LanguageModel& model, const std::vector<EncodedSample>& samples, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  double total = 0, count = 0;
  for (size_t i = 0; i < samples.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<EncodedSample> part(samples.begin() + static_cast<std::ptrdiff_t>(i),
                                    samples.begin() + static_cast<std::ptrdiff_t>(std::min(samples.size(), i + batch_size)));
    const ModelBatch batch = model.collate(part, false);
    const SequenceLogps lp = model.sequence_logps(batch);
    total -= lp.sum.sum().item<double>();
    count += lp.count.sum().item<double>();
  }
  if (count == 0) throw DataError("no labelled tokens to compute a loss on (every reply masked or truncated?)");
  return total / count;
}

FitResult run_sft(StageContext& ctx, LanguageModel& model, const std::vector<ChatSample>& train,
                  const std::vector<ChatSample>& held_out, const TrainConfig& config) {
  if (train.empty()) throw DataError("stage '" + ctx.stage_name() + "': no training rows");
  std::vector<EncodedSample> enc, eval;
  int64_t masked = 0;
  for (const auto& s : train) {
    enc.push_back(model.encode(s));
    masked += enc.back().mismatch ? 1 : 0;
  }
  for (const auto& s : held_out) eval.push_back(model.encode(s));
  if (masked) ctx.log().warn("{} of {} rows have a tokenization mismatch and train on nothing", masked, enc.size());
  ctx.log_metric("data/train_rows", static_cast<double>(enc.size()));
  ctx.log_metric("data/mismatched_rows", static_cast<double>(masked));

  if (!eval.empty()) {
    const double before = mean_lm_loss(model, eval, config.batch_size);
    ctx.log_metric("eval/loss_before", before);
    ctx.log().info("held-out loss before training: {:.4f} ({} rows)", before, eval.size());
  }
  Trainer trainer(ctx, model, config);
  FitResult r = trainer.fit(static_cast<int64_t>(enc.size()), [&](const std::vector<int64_t>& idx) {
    std::vector<EncodedSample> part;
    for (int64_t i : idx) part.push_back(enc[static_cast<size_t>(i)]);
    const ModelBatch batch = model.collate(part, false);
    MicroBatch mb;
    mb.weight = static_cast<double>(batch.labels.ne(kIgnoreIndex).sum().item<int64_t>());  // a token mean
    if (mb.weight == 0) {
      mb.loss = torch::zeros({}, torch::TensorOptions().device(model.device())).requires_grad_();
    } else {
      mb.loss = model.lm_loss(batch);
    }
    mb.tokens = batch.attention_mask.sum().item<int64_t>();
    return mb;
  });
  if (!eval.empty()) {
    const double after = mean_lm_loss(model, eval, config.batch_size);
    ctx.log_metric("eval/loss", after);
    ctx.log().info("held-out loss after training: {:.4f}", after);
  }
  return r;
}

std::vector<ChatSample> held_out_conversations(StageContext& ctx, const std::string& default_plugin) {
  std::vector<ChatSample> out;
  if (!ctx.options().has("eval_data")) return out;
  std::shared_ptr<Plugin> holder;
  DataContext ectx = DataContext::for_stage(ctx, "eval_data/");
  DatasetProvider& data = load_dataset(ctx, "eval_data", default_plugin, holder);
  if (data.provides(RowKind::Conversation)) {
    for (const auto& row : data.conversation_rows(ectx)) out.push_back(to_sample(row));
  } else {
    for (const auto& row : data.scored_candidates_rows(ectx))
      for (const auto& c : row.candidates) out.push_back(to_sample({{"human", row.question}, {"gpt", c.response}}, row.images));
  }
  return out;
}

// The authors' SFT-style runs (findalexli/mllm-dpo @ dab3458, the two scripts named in plugins/algorithms/README.md,
// their train_mem.py arguments): "--mm_projector_lr 2e-5",
// "--num_train_epochs 3", "--per_device_train_batch_size 16", "--gradient_accumulation_steps 2",
// "--learning_rate 4e-4", "--warmup_ratio 0.03", "--lr_scheduler_type cosine".
TrainDefaults sft_defaults() {
  TrainDefaults d;
  d.lr = 4e-4, d.projector_lr = 2e-5, d.epochs = 3, d.batch_size = 16, d.grad_accum = 2, d.warmup_ratio = 0.03;
  return d;
}

ResumableJsonl::ResumableJsonl(std::filesystem::path final_path, const std::vector<std::string>& ids, size_t block)
    : final_(std::move(final_path)), partial_(final_.parent_path() / (final_.stem().string() + ".partial.jsonl")) {
  std::vector<std::string>& kept = kept_;
  {
    std::ifstream in(partial_);
    for (std::string line; kept.size() < ids.size() && std::getline(in, line);) {
      try {
        if (nlohmann::json::parse(line).value("id", "") != ids[kept.size()]) break;
      } catch (const std::exception&) {
        break;  // a torn last line from a killed run
      }
      kept.push_back(line);
    }
  }
  kept.resize(kept.size() / block * block);
  std::string text;
  for (const auto& l : kept) text += l + "\n";
  write_file_atomic(partial_, text);
  done_ = kept.size();
  out_.open(partial_, std::ios::app);
  if (!out_) throw IoError("cannot append to '" + partial_.string() + "'");
}

void ResumableJsonl::finish() {
  out_.close();
  if (out_.fail()) throw IoError("cannot write '" + partial_.string() + "' (disk full?)");
  std::error_code ec;
  std::filesystem::rename(partial_, final_, ec);
  if (ec) throw IoError("cannot rename '" + partial_.string() + "' to '" + final_.string() + "': " + ec.message());
}

void bind_model(OptionBinder& o, YAML::Node* model) {
  o.required("model", model, "the model to train: a plugin name or {plugin: llava, path: ..., lora_r: 128, ...}",
             "model");
}

void bind_data(OptionBinder& o, YAML::Node* data, const std::string& what) {
  o.required("data", data, what + ": a row file (e.g. ${artifact:data/rows}) or a dataset node {plugin: ..., file: ...}",
             "dataset");
}

void bind_prefix_sharing(OptionBinder& o, std::string* prefix_sharing) {
  o.one_of("prefix_sharing", prefix_sharing, "off", {"off", "on", "shared_dropout"},
           "compute each pair's prompt (image included) once for both sides: the same log-probs up to float "
           "rounding, fewer tokens; shared_dropout accepts one LoRA dropout mask over the prompt for both");
}

void bind_eval_data(OptionBinder& o, YAML::Node* eval_data) {
  o.bind("eval_data", eval_data, YAML::Node(), "held-out rows (same forms as data): loss before and after training",
         "dataset");
}

int64_t shared_prompt_tokens(const EncodedSample& chosen, const EncodedSample& rejected, size_t pair) {
  auto first_label = [](const EncodedSample& s) {
    const auto it = std::find_if(s.labels.begin(), s.labels.end(), [](int64_t l) { return l != kIgnoreIndex; });
    return static_cast<size_t>(it - s.labels.begin());
  };
  const size_t n = std::min(first_label(chosen), first_label(rejected));
  const auto& c = chosen.input_ids;
  const auto& r = rejected.input_ids;
  const std::string where = fmt::format("prefix_sharing: pair {} (0-based, in the batch's order)", pair);
  if (n == 0 || n >= c.size() || n >= r.size())
    throw DataError(fmt::format("{}: a row has no prompt before its reply, or no reply", where));
  const auto differ = std::mismatch(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(n), r.begin()).first;
  if (differ != c.begin() + static_cast<std::ptrdiff_t>(n))
    throw DataError(fmt::format("{}: the chosen and rejected rows differ at prompt token {} of {} ({} vs {}); "
                                "sharing needs the same prompt on both sides", where, differ - c.begin(), n, *differ,
                                r[static_cast<size_t>(differ - c.begin())]));
  if (chosen.images != rejected.images)
    throw DataError(fmt::format("{}: the chosen and rejected rows show different images", where));
  auto images_after = [&](const std::vector<int64_t>& ids) {
    return std::count(ids.begin() + static_cast<std::ptrdiff_t>(n), ids.end(), kImagePlaceholderId);
  };
  if (images_after(c) > 0 || images_after(r) > 0)
    throw DataError(fmt::format("{}: an image comes after the prompt (in a reply's turn); only the prompt's images "
                                "can be shared", where));
  return static_cast<int64_t>(n);
}

PairSides pair_logps(LanguageModel& model, const std::vector<const EncodedSample*>& chosen,
                     const std::vector<const EncodedSample*>& rejected, bool per_token,
                     const std::string& prefix_sharing) {
  MMR_CHECK(chosen.size() == rejected.size(), "pair_logps: " << chosen.size() << " chosen, " << rejected.size() << " rejected");
  if (prefix_sharing != "off") {
    std::vector<LanguageModel::SharedPromptPair> pairs;
    int64_t tokens = 0;
    for (size_t i = 0; i < chosen.size(); ++i) {
      pairs.push_back({chosen[i], rejected[i], shared_prompt_tokens(*chosen[i], *rejected[i], i)});
      tokens += static_cast<int64_t>(chosen[i]->input_ids.size() + rejected[i]->input_ids.size());
    }
    if (auto both = model.shared_prompt_logps(pairs, per_token, prefix_sharing == "shared_dropout")) {
      PairSides out;
      out.chosen = std::move(both->first);
      out.rejected = std::move(both->second);
      out.tokens = tokens;  // both rows' ids, as counted without sharing: throughput figures stay comparable
      return out;
    }
    static bool told = false;  // once per process: it repeats for every batch
    if (!told)
      spdlog::info("prefix_sharing: this batch's pairs are computed as separate rows (a packed row would pass the "
                   "model's max_length, or the model cannot pack pairs)");
    told = true;
  }
  std::vector<EncodedSample> samples;
  for (const auto* s : chosen) samples.push_back(*s);
  for (const auto* s : rejected) samples.push_back(*s);
  const ModelBatch batch = model.collate(samples, false);
  const SequenceLogps all = model.sequence_logps(batch, per_token);
  const int64_t n = static_cast<int64_t>(chosen.size());
  PairSides out;
  out.tokens = batch.attention_mask.sum().item<int64_t>();
  auto split = [&](SequenceLogps& side, int64_t from) {
    side.sum = all.sum.narrow(0, from, n);
    side.mean = all.mean.narrow(0, from, n);
    side.count = all.count.narrow(0, from, n);
    if (per_token) side.per_token.assign(all.per_token.begin() + from, all.per_token.begin() + from + n);
  };
  split(out.chosen, 0);
  split(out.rejected, n);
  return out;
}

}  // namespace mmr::train
