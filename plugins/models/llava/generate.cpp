// The llava model's generation: a prefill over the left-padded prompts into a preallocated KV cache, then one
// token per step for every row until each stops (EOS, a stop string, or max_new_tokens). Sampling follows HF's
// order: temperature, top-k, top-p, then a multinomial draw from a generator seeded by the request.
#include <fmt/format.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "llava.h"

namespace mmr::llava {

torch::Tensor LlavaModel::next_tokens(torch::Tensor logits, const GenerationConfig& g, at::Generator& gen) const {
  if (g.temperature <= 0) return logits.argmax(-1);  // (B, V) -> (B)
  logits = (logits / g.temperature).to(torch::kCPU);
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
  return torch::multinomial(logits.softmax(-1), 1, false, gen).squeeze(1).to(device_);
}

namespace {

// Records one new token of a row; true when the row is finished (EOS or a stop string).
bool record_token(Generation& out, int64_t id, int64_t eos, const GenerationConfig& g, const Tokenizer* tokenizer) {
  out.token_ids.push_back(id);
  if (g.stop_at_eos && id == eos) {
    out.finish_reason = "eos";
    return true;
  }
  if (g.stop_strings.empty() || !tokenizer) return false;
  size_t skipped = 0;
  const std::string text = tokenizer->decode(out.token_ids, &skipped);
  for (const auto& s : g.stop_strings)
    if (!s.empty() && text.find(s) != std::string::npos) {
      out.finish_reason = "stop_string";
      return true;
    }
  return false;
}

}  // namespace

// Text, finish reason and prompt length of every row once decoding ended.
void LlavaModel::finish_generation(std::vector<Generation>& out, const Expanded& e, const GenerationConfig& g) const {
  for (size_t i = 0; i < out.size(); ++i) {
    auto& o = out[i];
    if (o.finish_reason.empty()) o.finish_reason = "length";
    o.prompt_tokens = e.attention_mask[static_cast<int64_t>(i)].sum().item<int64_t>();
    std::vector<int64_t> text_ids = o.token_ids;
    if (o.finish_reason == "eos") text_ids.pop_back();
    size_t skipped = 0;
    o.text = tokenizer_ ? tokenizer_->decode(text_ids, &skipped) : "";
    if (o.finish_reason == "stop_string")
      for (const auto& s : g.stop_strings) {
        const size_t at = o.text.find(s);
        if (!s.empty() && at != std::string::npos) o.text = o.text.substr(0, at);
      }
  }
}

std::vector<Generation> LlavaModel::generate(const std::vector<ChatSample>& prompts, const GenerationConfig& g) {
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  const bool was_training = root_->is_training();
  root_->eval();
  std::vector<EncodedSample> enc;
  for (const auto& p : prompts) enc.push_back(encode_prompt(p));
  const Expanded e = expand(collate(enc, /*left_pad=*/true));
  const int64_t b = e.embeds.size(0), t0 = e.embeds.size(1);
  const int64_t total = t0 + g.max_new_tokens;
  std::vector<LayerCache> caches(static_cast<size_t>(config_.text.num_hidden_layers));
  const auto kv_opts = torch::TensorOptions().dtype(dtype_).device(device_);
  for (auto& c : caches) {
    c.k = torch::empty({b, config_.text.num_key_value_heads, total, config_.text.head_dim}, kv_opts);  // (B, H, T, Dh)
    c.v = torch::empty_like(c.k);
  }
  torch::Tensor mask = torch::zeros({b, total}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
  mask.narrow(1, 0, t0).copy_(e.attention_mask);
  torch::Tensor h = llama_->forward(e.embeds, mask.narrow(1, 0, t0), e.position_ids, &caches);  // prefill
  torch::Tensor last = h.select(1, t0 - 1);                                      // (B, D)
  torch::Tensor next_pos = e.position_ids.select(1, t0 - 1).unsqueeze(1) + 1;    // (B, 1)

  auto gen = at::detail::createCPUGenerator(g.seed);
  std::vector<Generation> out(static_cast<size_t>(b));
  std::vector<bool> done(static_cast<size_t>(b), false);
  const int64_t eos = tokenizer_ ? tokenizer_->eos_id() : 2;
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;
  for (int64_t step = 0; step < g.max_new_tokens; ++step) {
    const torch::Tensor next = next_tokens(llama_->lm_head_forward(last).to(torch::kFloat32), g, gen);  // (B)
    const torch::Tensor next_cpu = next.to(torch::kCPU);
    for (int64_t i = 0; i < b; ++i)
      if (!done[i]) done[i] = record_token(out[i], next_cpu[i].item<int64_t>(), eos, g, tokenizer_.get());
    if (std::all_of(done.begin(), done.end(), [](bool x) { return x; }) || step + 1 == g.max_new_tokens) break;
    torch::Tensor feed = next.clone();  // finished rows keep decoding a pad token that nothing reads
    for (int64_t i = 0; i < b; ++i)
      if (done[i]) feed[i] = pad;
    mask.select(1, t0 + step).fill_(1);
    h = llama_->forward(llama_->embed_tokens(feed.unsqueeze(1)), mask.narrow(1, 0, t0 + step + 1), next_pos, &caches);
    last = h.select(1, 0);
    next_pos = next_pos + 1;
  }
  finish_generation(out, e, g);
  root_->train(was_training);
  return out;
}

}  // namespace mmr::llava
