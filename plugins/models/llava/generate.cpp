// The llava model's generation: a prefill over the left-padded prompts into a preallocated KV cache, then one
// token per step for every row until each stops (EOS, a stop string, or max_new_tokens). Sampling follows HF's
// order: temperature, top-k, top-p, then a multinomial draw from a generator seeded by the request.
//
// The decoding loop never waits for the device inside a step: tokens, positions, the cache slot and the rows
// finished by EOS live on the device, each step's token is written into a history there, and the host reads the
// history only at a few steps (1, 2, 4, 8, then every 16) to check stop strings and whether every row is done.
// Rows are independent, so reading late changes no output; at most 15 extra steps run after the last row ends.
// On a GPU each step replays a CUDA graph (device_steps.h), kept with the decoding state between calls.
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "device_steps.h"
#include "internal.h"
#include "llava.h"

namespace mmr::llava {

torch::Tensor LlavaModel::next_tokens(torch::Tensor logits, const GenerationConfig& g, at::Generator& gen) const {
  if (g.temperature <= 0) return logits.argmax(-1);  // (B, V) -> (B)
  logits = logits / g.temperature;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  if (g.top_k > 0 && g.top_k < logits.size(-1)) {
    torch::Tensor kth = std::get<0>(logits.topk(g.top_k, -1)).select(1, g.top_k - 1).unsqueeze(1);
    logits = logits.masked_fill(logits < kth, minus_inf);
  }
  if (g.top_p < 1.0) {
    auto [sorted, order] = logits.sort(-1, /*descending=*/false);
    torch::Tensor cum = sorted.softmax(-1).cumsum(-1);
    torch::Tensor remove = cum <= (1 - g.top_p);
    remove.select(1, remove.size(1) - 1).fill_(false);  // keep at least the best token
    logits = logits.scatter(1, order, sorted.masked_fill(remove, minus_inf));
  }
  return torch::multinomial(logits.softmax(-1), 1, false, gen).squeeze(1);
}

// Records one new token of a row; true when the row is finished (EOS or a stop string). Stop strings are looked
// for in the text of the last tokens only: an occurrence is found at the token that completes it, so it lies in
// the last (its length) tokens, each at least one byte; the margin covers a first token whose leading space a
// partial decode drops, and tokens that decode to nothing.
bool record_token(Generation& out, int64_t id, int64_t eos, const GenerationConfig& g, const Tokenizer* tokenizer) {
  out.token_ids.push_back(id);
  if (g.stop_at_eos && id == eos) {
    out.finish_reason = "eos";
    return true;
  }
  if (g.stop_strings.empty() || !tokenizer) return false;
  size_t longest = 0;
  for (const auto& s : g.stop_strings) longest = std::max(longest, s.size());
  const size_t window = 2 * longest + 8;
  const auto& ids = out.token_ids;
  const std::vector<int64_t> tail(ids.size() > window ? ids.end() - static_cast<std::ptrdiff_t>(window) : ids.begin(),
                                  ids.end());
  size_t skipped = 0;
  const std::string text = tokenizer->decode(tail, &skipped);
  for (const auto& s : g.stop_strings)
    if (!s.empty() && text.find(s) != std::string::npos) {
      out.finish_reason = "stop_string";
      return true;
    }
  return false;
}

namespace {

// Steps after which the host reads the new tokens: early ones (short replies end there), then every 16th.
bool host_reads_after(int64_t step) {
  const int64_t n = step + 1;
  return n <= 8 ? (n & (n - 1)) == 0 : n % 16 == 0;
}

}  // namespace

// The text of a row's tokens so far (its EOS left out).
std::string LlavaModel::reply_text(const Generation& o) const {
  std::vector<int64_t> ids = o.token_ids;
  if (o.finish_reason == "eos") ids.pop_back();
  size_t skipped = 0;
  return tokenizer_ ? tokenizer_->decode(ids, &skipped) : "";
}

// A finished row's text (cut before a stop string) and finish reason.
void LlavaModel::finish_text(Generation& o, const GenerationConfig& g) const {
  if (o.finish_reason.empty()) o.finish_reason = "length";
  o.text = reply_text(o);
  if (o.finish_reason == "stop_string")
    for (const auto& s : g.stop_strings) {
      const size_t at = o.text.find(s);
      if (!s.empty() && at != std::string::npos) o.text = o.text.substr(0, at);
    }
}

// Text, finish reason and prompt length (B, on the device) of every row once decoding ended.
void LlavaModel::finish_generation(std::vector<Generation>& out, const torch::Tensor& prompt_tokens,
                                   const GenerationConfig& g) const {
  const torch::Tensor n = prompt_tokens.to(torch::kCPU);
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].prompt_tokens = n[static_cast<int64_t>(i)].item<int64_t>();
    finish_text(out[i], g);
  }
}

// Inference from here on: the adapter of a model never set to training (an evaluated or served checkpoint) is
// folded into the weights (its branch would cost two more GEMMs per projection each step), and q/k/v and gate/up
// are packed into one GEMM each. The fold is for good (merged_for_inference_): subtracting the delta again would
// not give back W in bf16.
void LlavaModel::prepare_for_inference() {
  bool active = false;
  for (auto& [path, lin] : lora_targets(llama_)) active = active || lin->lora_active();
  if (active && !trained_) {
    merge_lora();
    merged_for_inference_ = true;
    log()->info("llava: LoRA adapter merged into the weights for generation (the model is not being trained)");
  }
  for (size_t i = 0; i < llama_->layers->size(); ++i)
    if (llama_->layers[i]->as<LlamaLayer>()->pack_projections()) forget_decode_state();  // weights moved
}

// The decoding state on the device, for one batch size and capacity (prompt + new tokens, rounded up to 128 slots).
// A step reads and updates it in place, so its addresses stay fixed: the CUDA graphs captured for one call replay
// in the next call of the same shape (an evaluation's batches mostly share one). Unwritten cache slots are zeros,
// hidden by the mask (zero weight times a stale NaN would still be NaN).
struct DecodeState {
  DecodeState(const LlavaConfig& config, int64_t batch, int64_t capacity, torch::Dtype dtype, const torch::Device& device,
              bool graphs_allowed)
      : batch(batch), capacity(capacity), graphs(device, graphs_allowed) {
    const auto kv_opts = torch::TensorOptions().dtype(dtype).device(device);
    const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
    caches.resize(static_cast<size_t>(config.text.num_hidden_layers));
    for (auto& c : caches) {
      c.k = torch::zeros({batch, config.text.num_key_value_heads, capacity, config.text.head_dim}, kv_opts);
      c.v = torch::zeros_like(c.k);
    }
    mask = torch::zeros({batch, capacity}, long_opts);
    feed = torch::zeros({batch, 1}, long_opts);       // the token each row feeds
    pos = torch::zeros({batch, 1}, long_opts);        // its position
    write_at = torch::zeros({1}, long_opts);          // its cache slot
    finished = torch::zeros({batch}, torch::TensorOptions().dtype(torch::kBool).device(device));  // by EOS
    history = torch::zeros({batch, capacity}, long_opts);  // the new tokens
  }
  int64_t batch, capacity;
  const void* rope_table = nullptr;  // where the captured steps read RoPE's table
  std::vector<LayerCache> caches;
  torch::Tensor mask, feed, pos, write_at, finished, history;
  StepGraphs graphs;
};

void LlavaModel::forget_decode_state() {
  decode_.reset();
  vision_graphs_.reset();
}

// Rows of one batch whose prompts are the same tokens and images up to their last image: an evaluation asks several
// questions about each image (POPE six, one after another). That head (~600 positions for one image) is prefilled
// once per group, its keys and values copied to each of the group's rows, and each row prefills only its own tail
// (the question, ~40 positions). A row then attends to the same keys at the same positions as when prefilled alone:
// the outputs differ only by float rounding, as with any change of batch shape. MMR_SHARE_PREFIXES=0 turns it off.
struct SharedPrefixes {
  std::vector<EncodedSample> heads;  // one per group, with its images
  std::vector<EncodedSample> tails;  // one per row, text only
  std::vector<int64_t> group;        // of each row
};

int64_t LlavaModel::expanded_length(const EncodedSample& s) const {
  return static_cast<int64_t>(s.input_ids.size() + s.images.size() * (config_.vision.num_patches() - 1));
}

std::optional<SharedPrefixes> LlavaModel::shared_prefixes(const std::vector<EncodedSample>& prompts) const {
  const char* env = std::getenv("MMR_SHARE_PREFIXES");
  // Dynamic RoPE scales by the longest position of each forward call: the head alone would see other frequencies.
  if ((env && std::string(env) == "0") || prompts.size() < 2 || llama_->rope.dynamic()) return std::nullopt;
  SharedPrefixes out;
  std::map<std::pair<std::vector<int64_t>, std::vector<std::string>>, int64_t> groups;
  for (const auto& p : prompts) {
    if (p.images.empty() || expanded_length(p) > options_.max_length) return std::nullopt;  // the plain path truncates
    const auto tail = std::find(p.input_ids.rbegin(), p.input_ids.rend(), kImagePlaceholderId).base();
    if (tail == p.input_ids.end()) return std::nullopt;  // a row needs a position of its own for its logits
    std::vector<int64_t> head_ids(p.input_ids.begin(), tail), tail_ids(tail, p.input_ids.end());
    const auto [it, added] = groups.try_emplace({head_ids, p.images}, static_cast<int64_t>(out.heads.size()));
    if (added)
      out.heads.push_back({head_ids, std::vector<int64_t>(head_ids.size(), kIgnoreIndex), p.images, false});
    out.group.push_back(it->second);
    out.tails.push_back({tail_ids, std::vector<int64_t>(tail_ids.size(), kIgnoreIndex), {}, false});
  }
  if (out.heads.size() == prompts.size()) return std::nullopt;  // nothing shared
  return out;
}

// The prompts into the cache (slots 0..t0-1, left-padded); returns the first new token's logits (B, V) and leaves
// each row's last position in d.pos.
torch::Tensor LlavaModel::prefill(DecodeState& d, const Expanded& e) {
  const int64_t t0 = e.embeds.size(1);
  d.mask.narrow(1, 0, t0).copy_(e.attention_mask);
  torch::Tensor h = llama_->forward(e.embeds, d.mask.narrow(1, 0, t0), e.position_ids, &d.caches, !e.padded);
  d.pos.copy_(e.position_ids.select(1, t0 - 1).unsqueeze(1));
  return llama_->lm_head_forward(h.select(1, t0 - 1)).to(torch::kFloat32);
}

// The same with shared heads: the groups' heads (left-padded to P slots) are prefilled as a batch of their own, copied
// to their rows' slots 0..P-1, then the tails (left-padded to T slots) are prefilled into slots P..P+T-1 after them.
// A row's positions run on from its head's length; the padding between head and tail is masked.
torch::Tensor LlavaModel::prefill_shared(DecodeState& d, const SharedPrefixes& s, const Expanded& heads,
                                         const Expanded& tails) {
  const int64_t p = heads.embeds.size(1), t = tails.embeds.size(1);
  const torch::Tensor group = torch::tensor(s.group, torch::kInt64).to(device_);
  {
    std::vector<LayerCache> once(d.caches.size());
    for (size_t l = 0; l < once.size(); ++l) {
      const torch::Tensor& k = d.caches[l].k;
      once[l].k = torch::empty({heads.embeds.size(0), k.size(1), p, k.size(3)}, k.options());
      once[l].v = torch::empty_like(once[l].k);
    }
    llama_->forward(heads.embeds, heads.attention_mask, heads.position_ids, &once, !heads.padded);
    // One broadcast copy per run of consecutive rows with the same head (an evaluation's rows come grouped), not
    // index_select and then a copy: that wrote and read every row's keys twice more (26 ms of a 243 ms batch of
    // 16 POPE questions on an H200, the largest part of the prefill after the GEMMs).
    for (size_t r = 0; r < s.group.size();) {
      size_t end = r + 1;
      while (end < s.group.size() && s.group[end] == s.group[r]) ++end;
      const int64_t rows = static_cast<int64_t>(end - r);
      for (size_t l = 0; l < once.size(); ++l)
        for (auto [to, from] : {std::pair{d.caches[l].k, once[l].k}, std::pair{d.caches[l].v, once[l].v}}) {
          torch::Tensor slots = to.narrow(0, static_cast<int64_t>(r), rows).narrow(2, 0, p);
          slots.copy_(from.narrow(0, s.group[r], 1).expand_as(slots));
        }
      r = end;
    }
    for (auto& c : d.caches) c.length = p;
  }
  const torch::Tensor head_length = heads.attention_mask.sum(1).index_select(0, group);  // (B)
  d.mask.narrow(1, 0, p).copy_(heads.attention_mask.index_select(0, group));
  d.mask.narrow(1, p, t).copy_(tails.attention_mask);
  const torch::Tensor pos = tails.position_ids + head_length.unsqueeze(1);
  torch::Tensor h = llama_->forward(tails.embeds, d.mask.narrow(1, 0, p + t), pos, &d.caches);
  d.pos.copy_(pos.select(1, t - 1).unsqueeze(1));
  shared_prefix_rows_ += static_cast<int64_t>(s.group.size() - s.heads.size());
  return llama_->lm_head_forward(h.select(1, t - 1)).to(torch::kFloat32);
}

std::vector<Generation> LlavaModel::generate(const std::vector<ChatSample>& prompts, const GenerationConfig& g) {
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  const bool was_training = root_->is_training();
  root_->eval();
  prepare_for_inference();
  std::vector<EncodedSample> enc;
  for (const auto& p : prompts) enc.push_back(encode_prompt(p));
  const std::optional<SharedPrefixes> shared = shared_prefixes(enc);
  Expanded whole, heads, tails;  // the prompts, or their shared heads and own tails
  if (shared) {
    heads = expand(collate(shared->heads, /*left_pad=*/true));
    tails = expand(collate(shared->tails, /*left_pad=*/true));
  } else {
    whole = expand(collate(enc, /*left_pad=*/true));
  }
  const int64_t b = static_cast<int64_t>(enc.size());
  const int64_t t0 = shared ? heads.embeds.size(1) + tails.embeds.size(1) : whole.embeds.size(1);
  const int64_t total = t0 + g.max_new_tokens, capacity = (total + 127) / 128 * 128;
  const void* rope_table = llama_->rope.reserve(capacity, dtype_, device_);
  if (!decode_ || decode_->batch != b || decode_->capacity != capacity || decode_->rope_table != rope_table) {
    decode_.reset();  // its memory first
    decode_ = std::make_shared<DecodeState>(config_, b, capacity, dtype_, device_, !llama_->rope.dynamic());
    decode_->rope_table = rope_table;
  }
  DecodeState& d = *decode_;
  d.mask.zero_();
  for (auto& c : d.caches) {  // the prefill writes slots 0..t0-1 by host-side length
    c.length = 0;
    c.write_at = torch::Tensor();
  }
  torch::Tensor logits = shared ? prefill_shared(d, *shared, heads, tails) : prefill(d, whole);  // (B, V)
  const torch::Tensor prompt_tokens = d.mask.narrow(1, 0, t0).sum(1);
  d.write_at.fill_(t0 - 1);
  d.finished.zero_();
  for (auto& c : d.caches) c.write_at = d.write_at;
  auto gen = sampling_generator(device_, g.seed);
  const int64_t eos = tokenizer_ ? tokenizer_->eos_id() : 2;
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;

  std::vector<Generation> out(static_cast<size_t>(b));
  std::vector<bool> done(static_cast<size_t>(b), false);
  int64_t read = 0;  // steps the host has read
  for (int64_t step = 0; step < g.max_new_tokens; ++step) {
    if (step > 0) {
      d.pos.add_(1);
      d.write_at.add_(1);
      // The attention span: exactly the filled slots eagerly; in 128-slot buckets with graphs (one graph each,
      // the unfilled slots hidden by the mask).
      const int64_t filled = t0 + step;
      const int64_t span = d.graphs.enabled() ? std::min(capacity, (filled + 127) / 128 * 128) : filled;
      for (auto& c : d.caches) c.span = span;
      logits = d.graphs.run(span, [&] {
        d.mask.index_fill_(1, d.write_at, 1);
        torch::Tensor hs = llama_->forward(llama_->embed_tokens(d.feed), d.mask.narrow(1, 0, span), d.pos, &d.caches);
        return llama_->lm_head_forward(hs.select(1, 0)).to(torch::kFloat32);
      });
    }
    const torch::Tensor next = next_tokens(logits, g, gen);  // (B)
    d.history.select(1, step).copy_(next);
    if (g.stop_at_eos) d.finished.logical_or_(next.eq(eos));
    d.feed.copy_(torch::where(d.finished, torch::full_like(next, pad), next).unsqueeze(1));  // finished rows: a pad
    if (!host_reads_after(step) && step + 1 < g.max_new_tokens) continue;
    const torch::Tensor fresh = d.history.narrow(1, read, step + 1 - read).to(torch::kCPU);
    auto ids = fresh.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < fresh.size(1) && !done[i]; ++j)
        done[i] = record_token(out[i], ids[i][j], eos, g, tokenizer_.get());
    read = step + 1;
    if (std::all_of(done.begin(), done.end(), [](bool x) { return x; })) break;
  }
  finish_generation(out, prompt_tokens, g);
  root_->train(was_training);
  return out;
}

}  // namespace mmr::llava
