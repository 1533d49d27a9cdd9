// The llava model's forward side: encoding conversations (LLaVA-1.5's vicuna_v1), padded batches, image features,
// the expansion of image placeholders into patch features, logits, response log-probs and the LM loss.
// Shape letters as in modules.h.
#include <fmt/format.h>

#include <algorithm>
#include <functional>
#include <map>

#include "core/lib/tokenizer/llava_text.h"
#include "device_steps.h"
#include "internal.h"
#include "llava.h"

namespace mmr::llava {
namespace {

std::vector<Turn> to_turns(const ChatSample& s) {
  std::vector<Turn> turns;
  for (const auto& t : s.turns) turns.push_back({t.role, t.text});
  return turns;
}

int64_t count_placeholders(const std::vector<int64_t>& ids) {
  return std::count(ids.begin(), ids.end(), kImagePlaceholderId);
}

}  // namespace


EncodedSample LlavaModel::encode(const ChatSample& sample) const {
  if (!tokenizer_) throw ConfigError("llava: no tokenizer (give 'tokenizer' or a 'path' with tokenizer.model)");
  const EncodedConversation enc = encode_conversation_v1(*tokenizer_, to_turns(sample), !sample.images.empty());
  if (enc.num_images != static_cast<int64_t>(sample.images.size()))
    throw DataError(fmt::format("conversation has {} <image> placeholder(s) but {} image(s)", enc.num_images,
                                sample.images.size()));
  return EncodedSample{enc.input_ids, enc.labels, sample.images, enc.mismatch};
}

EncodedSample LlavaModel::encode_prompt(const ChatSample& sample) const {
  if (!tokenizer_) throw ConfigError("llava: no tokenizer (give 'tokenizer' or a 'path' with tokenizer.model)");
  std::vector<Turn> turns = to_turns(sample);
  if (!options_.prompt_template.empty())
    for (auto it = turns.rbegin(); it != turns.rend(); ++it)
      if (it->role == "human") {
        it->text = apply_prompt_template(options_.prompt_template, it->text);
        break;
      }
  const EncodedPrompt enc = encode_generation_prompt_v1(*tokenizer_, turns, !sample.images.empty());
  if (enc.num_images != static_cast<int64_t>(sample.images.size()))
    throw DataError(fmt::format("prompt has {} <image> placeholder(s) but {} image(s)", enc.num_images,
                                sample.images.size()));
  return EncodedSample{enc.input_ids, std::vector<int64_t>(enc.input_ids.size(), kIgnoreIndex), sample.images, false};
}

torch::Tensor LlavaModel::pixel_values_for(const std::string& path) const {
  const ImageCache::Values v = images_->get({path}, image_config_)[0];
  return torch::tensor(*v).view({3, image_config_.crop_height, image_config_.crop_width});
}

ModelBatch LlavaModel::collate(const std::vector<EncodedSample>& samples, bool left_pad) const {
  MMR_CHECK(!samples.empty(), "collate of an empty batch");
  const int64_t b = static_cast<int64_t>(samples.size());
  int64_t t = 0;
  for (const auto& s : samples) t = std::max<int64_t>(t, static_cast<int64_t>(s.input_ids.size()));
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;
  torch::Tensor ids = torch::full({b, t}, pad, torch::kInt64);
  torch::Tensor labels = torch::full({b, t}, kIgnoreIndex, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, t}, torch::kInt64);
  std::vector<std::string> images;
  for (int64_t i = 0; i < b; ++i) {
    const auto& s = samples[i];
    const int64_t n = static_cast<int64_t>(s.input_ids.size());
    MMR_CHECK(s.labels.size() == s.input_ids.size(), "labels and ids differ in length");
    const int64_t off = left_pad ? t - n : 0;
    ids[i].narrow(0, off, n).copy_(torch::tensor(s.input_ids, torch::kInt64));
    labels[i].narrow(0, off, n).copy_(torch::tensor(s.labels, torch::kInt64));
    mask[i].narrow(0, off, n).fill_(1);
    if (!s.images.empty() && !config_.has_vision())
      throw DataError(fmt::format("sample {} has an image, but {} is a text-only LLaMA checkpoint (no vision tower)",
                                  i, options_.path));
    if (count_placeholders(s.input_ids) != static_cast<int64_t>(s.images.size()))
      throw DataError(fmt::format("sample {} has {} image placeholder(s) but {} image(s)", i,
                                  count_placeholders(s.input_ids), s.images.size()));
    images.insert(images.end(), s.images.begin(), s.images.end());
  }
  ModelBatch out;
  out.input_ids = ids.to(device_);
  out.labels = labels.to(device_);
  out.attention_mask = mask.to(device_);
  if (!images.empty()) {  // one (N, 3, S, S) tensor, copied to the device at once
    const auto values = images_->get(images, image_config_);
    const int64_t one = 3 * image_config_.crop_height * image_config_.crop_width;
    torch::Tensor pixels = torch::empty({static_cast<int64_t>(values.size()), 3, image_config_.crop_height,
                                         image_config_.crop_width});
    for (size_t i = 0; i < values.size(); ++i)
      std::copy(values[i]->begin(), values[i]->end(), pixels.data_ptr<float>() + static_cast<int64_t>(i) * one);
    out.pixel_values = pixels.to(device_);
  }
  out.left_padded = left_pad;
  return out;
}


// The vision tower and projector for N images, one CUDA graph per N (up to kMaxImages), when nothing needs their
// gradient: on a GPU their ~350 small kernels at N = 1 took longer to launch than to run (the batch-1 prefill's
// timeline, bench_llava --profile-calls). The graphs share one memory pool, since one runs at a time and its output
// is copied out at once. Dropped with the decoding state, whenever the weights a replay reads may have moved.
struct VisionGraphs {
  static constexpr int64_t kMaxImages = 16;
  explicit VisionGraphs(const torch::Device& device) : graphs(device, /*allowed=*/true, /*one_pool=*/true) {}
  StepGraphs graphs;
  std::map<int64_t, torch::Tensor> pixels;  // per image count: the input its graph reads
};

torch::Tensor LlavaModel::image_features(const torch::Tensor& pixel_values) {
  const torch::Tensor x = pixel_values.to(device_, dtype_);
  const int64_t n = x.size(0);
  if (!device_.is_cuda() || torch::GradMode::is_enabled() || n > VisionGraphs::kMaxImages) return vision_forward(x);
  if (!vision_graphs_) vision_graphs_ = std::make_shared<VisionGraphs>(device_);
  if (!vision_graphs_->graphs.enabled()) return vision_forward(x);
  torch::Tensor& in = vision_graphs_->pixels[n];
  if (in.defined() && in.sizes() != x.sizes()) {  // another image size (preprocessing changed): capture anew
    vision_graphs_.reset();
    return image_features(x);
  }
  if (!in.defined()) in = torch::empty_like(x);
  in.copy_(x);
  return vision_graphs_->graphs.run(n, [&] { return vision_forward(in); }).clone();
}

torch::Tensor LlavaModel::vision_forward(const torch::Tensor& pixels) {
  torch::Tensor h = vision_(pixels, vision_layer_);  // (N, 1+P, Dv)
  if (config_.vision_feature_select_strategy == "default") h = h.narrow(1, 1, h.size(1) - 1);  // drop CLS
  // With adapters off, the projector as loaded (a trained one is a copy: PEFT's modules_to_save).
  Projector& projector = adapters_enabled_ || !base_projector_ ? projector_ : base_projector_;
  return projector(h);  // (N, P, D)
}

// One row of the expanded sequence: its embeddings (T'_i, D), labels (T'_i) and where its text tokens sit.
struct ExpandedRow {
  torch::Tensor embeds, labels;
  std::vector<int64_t> text_pos;
};

namespace {

// LLaVA's prepare_inputs_labels_for_multimodal for one row: drop padding, embed the text runs and splice each
// image's P features in place of its placeholder (labels kIgnoreIndex there). `next_image` counts the batch's
// images used so far.
ExpandedRow splice_row(int64_t row, torch::TensorAccessor<int64_t, 1> ids, torch::TensorAccessor<int64_t, 1> mask,
                       torch::TensorAccessor<int64_t, 1> labels, const torch::Tensor& features, int64_t patches,
                       int64_t& next_image, const std::function<torch::Tensor(const std::vector<int64_t>&)>& embed) {
  std::vector<torch::Tensor> parts, part_labels;
  std::vector<int64_t> run_ids, run_labels;
  ExpandedRow out;
  int64_t len = 0;
  auto flush = [&] {
    if (run_ids.empty()) return;
    parts.push_back(embed(run_ids));
    part_labels.push_back(torch::tensor(run_labels, torch::kInt64));
    run_ids.clear();
    run_labels.clear();
  };
  for (int64_t j = 0; j < ids.size(0); ++j) {
    if (mask[j] == 0) continue;
    if (ids[j] == kImagePlaceholderId) {
      flush();
      if (!features.defined() || next_image >= features.size(0))
        throw DataError(fmt::format("batch row {} has more image placeholders than the batch has images", row));
      parts.push_back(features[next_image++]);
      part_labels.push_back(torch::full({patches}, kIgnoreIndex, torch::kInt64));
      len += patches;
    } else {
      out.text_pos.push_back(len++);
      run_ids.push_back(ids[j]);
      run_labels.push_back(labels[j]);
    }
  }
  flush();
  out.embeds = torch::cat(parts, 0);
  out.labels = torch::cat(part_labels, 0);
  return out;
}

}  // namespace

// Cuts a row to max_length (counted and logged: a truncated row is never silent).
void LlavaModel::truncate(ExpandedRow& row) {
  const int64_t max = options_.max_length;
  if (row.embeds.size(0) <= max) return;
  ++truncated_rows_;
  log()->warn("llava: a row of {} tokens (after image expansion) was cut to max_length {} ({} row(s) so far)",
              row.embeds.size(0), max, truncated_rows_);
  row.embeds = row.embeds.narrow(0, 0, max);
  row.labels = row.labels.narrow(0, 0, max);
  auto& tp = row.text_pos;
  tp.erase(std::remove_if(tp.begin(), tp.end(), [&](int64_t x) { return x >= max; }), tp.end());
}

LlavaModel::Expanded LlavaModel::expand(const ModelBatch& batch) {
  const int64_t b = batch.input_ids.size(0);
  torch::Tensor features;
  if (batch.pixel_values.defined() && batch.pixel_values.size(0) > 0) features = image_features(batch.pixel_values);
  const torch::Tensor ids_cpu = batch.input_ids.to(torch::kCPU), mask_cpu = batch.attention_mask.to(torch::kCPU);
  const torch::Tensor labels_cpu = batch.labels.to(torch::kCPU);
  auto ids_a = ids_cpu.accessor<int64_t, 2>();
  auto mask_a = mask_cpu.accessor<int64_t, 2>();
  auto lab_a = labels_cpu.accessor<int64_t, 2>();
  auto embed = [&](const std::vector<int64_t>& ids) {
    return llama_->embed_tokens(torch::tensor(ids, torch::kInt64).to(device_));
  };
  std::vector<ExpandedRow> rows;
  int64_t next_image = 0, longest = 0;
  for (int64_t i = 0; i < b; ++i) {
    rows.push_back(splice_row(i, ids_a[i], mask_a[i], lab_a[i], features, config_.vision.num_patches(), next_image, embed));
    truncate(rows.back());
    longest = std::max(longest, rows.back().embeds.size(0));
  }
  if (features.defined() && next_image != features.size(0))
    throw DataError(fmt::format("the batch has {} image(s) but {} placeholder(s)", features.size(0), next_image));
  // Pad again (left for generation, right for training) into one batch.
  Expanded out;
  out.embeds = torch::zeros({b, longest, config_.text.hidden_size}, torch::TensorOptions().dtype(dtype_).device(device_));
  out.labels = torch::full({b, longest}, kIgnoreIndex, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, longest}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = rows[i].embeds.size(0), off = batch.left_padded ? longest - n : 0;
    out.embeds[i].narrow(0, off, n).copy_(rows[i].embeds);
    out.labels[i].narrow(0, off, n).copy_(rows[i].labels);
    mask[i].narrow(0, off, n).fill_(1);
    for (auto& x : rows[i].text_pos) x += off;
    out.text_positions.push_back(std::move(rows[i].text_pos));
  }
  out.padded = mask.min().item<int64_t>() == 0;  // on the CPU: no wait for the device
  out.labels = out.labels.to(device_);
  out.attention_mask = mask.to(device_);
  out.position_ids = (out.attention_mask.cumsum(1) - 1).clamp_min(0);
  out.left_padded = batch.left_padded;
  return out;
}

torch::Tensor LlavaModel::hidden_states(const Expanded& e, std::vector<LayerCache>* caches) {
  return llama_->forward(e.embeds, e.attention_mask, e.position_ids, caches, !e.left_padded || !e.padded);
}

torch::Tensor LlavaModel::logits(const ModelBatch& batch) {
  Expanded e = expand(batch);
  return llama_->lm_head_forward(hidden_states(e, nullptr));
}

namespace {
// Consecutive runs of `values` (M), one per row, `counts` (B) long each.
std::vector<torch::Tensor> split_rows(const torch::Tensor& values, const torch::Tensor& counts) {
  const torch::Tensor n = counts.to(torch::kCPU, torch::kInt64);
  std::vector<torch::Tensor> out;
  int64_t start = 0;
  for (int64_t i = 0; i < n.size(0); ++i) {
    out.push_back(values.narrow(0, start, n[i].item<int64_t>()));
    start += n[i].item<int64_t>();
  }
  return out;
}
}  // namespace

SequenceLogps LlavaModel::sequence_logps(const ModelBatch& batch, bool per_token) {
  Expanded e = expand(batch);
  torch::Tensor h = hidden_states(e, nullptr);  // (B, T', D)
  const int64_t b = h.size(0), t = h.size(1);
  // get_batch_logps: logits[:, :-1] predict labels[:, 1:]; only labelled positions count. Only those rows of the
  // hidden states go through lm_head, so no (B, T', V) float32 tensor is made.
  torch::Tensor target = e.labels.narrow(1, 1, t - 1);                  // (B, T'-1)
  torch::Tensor sel = target.ne(kIgnoreIndex);
  torch::Tensor idx = sel.nonzero();                                     // (M, 2): row, position
  torch::Tensor rows = idx.select(1, 0), cols = idx.select(1, 1);
  torch::Tensor hs = h.narrow(1, 0, t - 1).index({rows, cols});          // (M, D)
  torch::Tensor lp = torch::log_softmax(llama_->lm_head_forward(hs).to(torch::kFloat32), -1);  // (M, V)
  torch::Tensor tok = lp.gather(1, target.index({rows, cols}).unsqueeze(1)).squeeze(1);        // (M)
  SequenceLogps out;
  out.sum = torch::zeros({b}, tok.options()).index_add(0, rows, tok);
  out.count = sel.sum(1).to(torch::kFloat32);
  out.mean = out.sum / out.count.clamp_min(1);
  if (per_token) out.per_token = split_rows(tok, sel.sum(1));
  return out;
}

namespace {

// Where each pair's parts sit in its packed row: prompt [0, p), chosen reply [p, p + c), rejected reply
// [p + c, p + c + r), padding after.
struct PackedParts {
  int64_t p, c, r;
};

// The log-probs of the labelled tokens `tok` (M), in row order and within a row chosen before rejected, summed per
// row and side (side 1 chosen, 2 rejected).
SequenceLogps side_logps(const torch::Tensor& tok, const torch::Tensor& rows, const torch::Tensor& side, int64_t which,
                         int64_t b, bool per_token) {
  const torch::Tensor sel = side.eq(which);
  SequenceLogps out;
  out.sum = torch::zeros({b}, tok.options()).index_add(0, rows, tok * sel.to(tok.scalar_type()));
  out.count = torch::zeros({b}, tok.options()).index_add(0, rows, sel.to(tok.scalar_type()));
  out.mean = out.sum / out.count.clamp_min(1);
  if (per_token) out.per_token = split_rows(tok.index({sel}), out.count);
  return out;
}

}  // namespace

// Each pair as one row [prompt, chosen reply, rejected reply]: the rejected reply's positions run on from the prompt
// (as in its own row) and it does not see the chosen reply, so each side attends to exactly what it attends to in
// its own row. A labelled token is read from the position before it, except the rejected reply's first: the
// prompt's last position predicts it.
std::optional<std::pair<SequenceLogps, SequenceLogps>> LlavaModel::shared_prompt_logps(
    const std::vector<SharedPromptPair>& pairs, bool per_token, bool shared_dropout) {
  for (auto& [path, lin] : lora_targets(llama_))
    if (root_->is_training() && lin->lora_active() && lin->dropout > 0 && !shared_dropout)
      throw ConfigError(fmt::format("prefix_sharing: on would give the chosen and rejected sides one LoRA dropout mask "
                                    "over their shared prompt (lora_dropout {}); set prefix_sharing: shared_dropout to "
                                    "accept that, or lora_dropout: 0", lin->dropout));
  const int64_t patches = config_.vision.num_patches();
  std::vector<EncodedSample> packed;
  std::vector<PackedParts> parts;
  for (const auto& pair : pairs) {
    const auto n = static_cast<std::ptrdiff_t>(pair.prompt_tokens);
    const EncodedSample &c = *pair.chosen, &r = *pair.rejected;
    EncodedSample row{{c.input_ids.begin(), c.input_ids.end()}, {c.labels.begin(), c.labels.end()}, c.images, false};
    row.input_ids.insert(row.input_ids.end(), r.input_ids.begin() + n, r.input_ids.end());
    row.labels.insert(row.labels.end(), r.labels.begin() + n, r.labels.end());
    const int64_t images = static_cast<int64_t>(c.images.size());
    const int64_t p = n + images * (patches - 1);
    parts.push_back({p, static_cast<int64_t>(c.input_ids.size()) - n, static_cast<int64_t>(r.input_ids.size()) - n});
    // A packed row past max_length would be cut where the two rows alone are not: those batches go unshared.
    if (p + parts.back().c + parts.back().r > options_.max_length) return std::nullopt;
    packed.push_back(std::move(row));
  }
  const Expanded e = expand(collate(packed, /*left_pad=*/false));
  const int64_t b = e.embeds.size(0), t = e.embeds.size(1);
  // Segments (0 prompt, 1 chosen, 2 rejected, 3 padding), positions, and the labelled tokens with their predictors.
  torch::Tensor seg = torch::full({b, t}, 3, torch::kInt64), pos = torch::zeros({b, t}, torch::kInt64);
  auto seg_a = seg.accessor<int64_t, 2>();
  auto pos_a = pos.accessor<int64_t, 2>();
  const torch::Tensor labels = e.labels.to(torch::kCPU);
  auto lab_a = labels.accessor<int64_t, 2>();
  std::vector<int64_t> rows, predictors, targets, sides;
  for (int64_t i = 0; i < b; ++i) {
    const auto [p, c, r] = parts[static_cast<size_t>(i)];
    for (int64_t j = 0; j < p + c + r; ++j) {
      seg_a[i][j] = j < p ? 0 : j < p + c ? 1 : 2;
      pos_a[i][j] = j < p + c ? j : j - c;
      if (lab_a[i][j] == kIgnoreIndex) continue;
      rows.push_back(i);
      predictors.push_back(j == p + c ? p - 1 : j - 1);
      targets.push_back(lab_a[i][j]);
      sides.push_back(seg_a[i][j]);
    }
  }
  if (rows.empty()) throw DataError("prefix_sharing: the batch has no labelled tokens (every row masked?)");
  seg = seg.to(device_);
  const torch::Tensor q = seg.unsqueeze(2), k = seg.unsqueeze(1);  // (B, T, 1), (B, 1, T)
  const torch::Tensor causal = torch::ones({t, t}, torch::TensorOptions().dtype(torch::kBool).device(device_)).tril();
  const torch::Tensor visible = causal.unsqueeze(0) & k.ne(3) & (k.eq(0) | k.eq(q));
  torch::Tensor h = llama_->forward_masked(e.embeds, additive_mask_of(visible, e.embeds.scalar_type()), pos.to(device_));
  auto on_device = [&](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kInt64).to(device_); };
  const torch::Tensor row_t = on_device(rows), side_t = on_device(sides);
  const torch::Tensor hs = h.index({row_t, on_device(predictors)});  // (M, D)
  const torch::Tensor lp = torch::log_softmax(llama_->lm_head_forward(hs).to(torch::kFloat32), -1);
  const torch::Tensor tok = lp.gather(1, on_device(targets).unsqueeze(1)).squeeze(1);
  return std::make_pair(side_logps(tok, row_t, side_t, 1, b, per_token), side_logps(tok, row_t, side_t, 2, b, per_token));
}

torch::Tensor LlavaModel::lm_loss(const ModelBatch& batch) {
  Expanded e = expand(batch);
  torch::Tensor h = hidden_states(e, nullptr);
  const int64_t t = h.size(1);
  torch::Tensor target = e.labels.narrow(1, 1, t - 1);
  torch::Tensor idx = target.ne(kIgnoreIndex).nonzero();
  if (idx.size(0) == 0) throw DataError("lm_loss: the batch has no labelled tokens (every row masked?)");
  torch::Tensor rows = idx.select(1, 0), cols = idx.select(1, 1);
  torch::Tensor logits = llama_->lm_head_forward(h.narrow(1, 0, t - 1).index({rows, cols})).to(torch::kFloat32);
  return torch::nn::functional::cross_entropy(logits, target.index({rows, cols}));
}

}  // namespace mmr::llava
