// Continuous batching for `runner serve` (ChatModel::start_batch, core/api/chat_api.h): requests join and leave
// a running batch between decoding steps.
//
// Layout: the rows' caches are right-aligned in one (B, K, C, E) cache per layer. Row i holds its tokens in
// columns [T - length_i, T), and every step writes column T for all rows, so a step is one forward over the batch,
// as in generate(); each row keeps its own positions (length_i), so it sees what it would see alone. A join or a
// leave repacks the cache against the new longest row: one copy of the live cache per change of membership,
// against one forward per token.
//
// A step first hands out each row's pending token (chosen by the previous forward, or by the prefill for a row
// that just joined), then runs the forward that chooses the next one for the rows still going: a request's
// tokens are the ones generate() gives for its prompt alone (greedy: the same argmax; sampled: its own generator,
// seeded as generate() seeds it, draws once per token). Dynamic RoPE scales by the batch's longest position, as
// HF's batched generate does.
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "device_steps.h"
#include "internal.h"
#include "llava.h"

namespace mmr::llava {

class LlavaDecodeBatch : public DecodeBatch {
 public:
  explicit LlavaDecodeBatch(LlavaModel& model) : m_(model) {}
  void add(uint64_t id, const ChatSample& prompt, const GenerationConfig& config) override;
  void cancel(uint64_t id) override;
  std::vector<BatchEvent> step() override;
  size_t size() const override { return rows_.size(); }

 private:
  struct Row {
    uint64_t id = 0;
    GenerationConfig config;
    std::optional<at::Generator> gen;
    Generation out;
    int64_t length = 0;   // tokens in its cache: the prompt, then every fed token
    int64_t pending = 0;  // the token chosen and not yet handed out
    int64_t slot = -1;    // its row in the batch cache; -1: only in `prefill`
    std::vector<LayerCache> prefill;  // a new row's cache (1, K, length, E) until the next repack
  };
  struct Inference;  // eval mode and no autograd for the scope of a call
  void repack();
  void forward();
  bool record(Row& row);  // hands out the pending token; true when the row is done
  // new_tokens, or fewer where the reply would pass the model's context; DataError for a prompt it cannot take.
  int64_t fitting_new_tokens(const EncodedSample& prompt, int64_t new_tokens) const;

  LlavaModel& m_;
  std::vector<Row> rows_;
  std::vector<LayerCache> caches_;
  torch::Tensor mask_;  // (B, C): 1 where a row has a token
  int64_t t_ = 0;       // the column the next step writes
};

struct LlavaDecodeBatch::Inference {
  explicit Inference(LlavaModel& m) : root(*m.root_), was_training(root.is_training()) {
    root.eval();
    m.prepare_for_inference();
  }
  ~Inference() { root.train(was_training); }
  torch::NoGradGuard no_grad;
  torch::nn::Module& root;
  bool was_training;
};

std::unique_ptr<DecodeBatch> LlavaModel::start_batch() { return std::make_unique<LlavaDecodeBatch>(*this); }

// A served request must fit the model. A prompt past max_length is refused: generate() would cut it (an evaluation
// logs and counts that), and a client should know. A reply that would run past the positions the model was trained
// for (max_position_embeddings) is cut there instead, ending with finish_reason "length": judges ask a fixed
// max_tokens (1024) whatever their prompt's length, as llama.cpp's server allows (vLLM refuses such a request).
int64_t LlavaDecodeBatch::fitting_new_tokens(const EncodedSample& prompt, int64_t new_tokens) const {
  const int64_t p = m_.expanded_length(prompt), context = m_.config_.text.max_position_embeddings;
  if (p > m_.options_.max_length)
    throw DataError(fmt::format("the prompt is {} tokens (each image counts {}), more than this model takes ({}: "
                                "its max_length)", p, m_.config_.vision.num_patches(), m_.options_.max_length));
  if (p >= context)
    throw DataError(fmt::format("the prompt is {} tokens (each image counts {}): this model's context of {} tokens "
                                "leaves no room for a reply", p, m_.config_.vision.num_patches(), context));
  return std::min(new_tokens, context - p);
}

void LlavaDecodeBatch::add(uint64_t id, const ChatSample& prompt, const GenerationConfig& config) {
  Inference scope(m_);
  const EncodedSample encoded = m_.encode_prompt(prompt);
  Row row;
  row.config = config;
  row.config.max_new_tokens = fitting_new_tokens(encoded, config.max_new_tokens);
  const LlavaModel::Expanded e = m_.expand(m_.collate({encoded}, /*left_pad=*/true));
  row.id = id;
  row.length = e.embeds.size(1);
  row.out.prompt_tokens = row.length;
  row.prefill.resize(m_.llama_->layers->size());
  const auto& text = m_.config_.text;
  for (auto& c : row.prefill) {
    c.k = torch::zeros({1, text.num_key_value_heads, row.length, text.head_dim},
                       torch::TensorOptions().dtype(m_.dtype_).device(m_.device_));
    c.v = torch::zeros_like(c.k);
  }
  // generate()'s prefill for this prompt alone: no padding, so the causal path.
  const torch::Tensor h = m_.llama_->forward(e.embeds, e.attention_mask, e.position_ids, &row.prefill, true);
  const torch::Tensor logits = m_.llama_->lm_head_forward(h.select(1, row.length - 1)).to(torch::kFloat32);
  row.gen = sampling_generator(m_.device_, config.seed);
  row.pending = m_.next_tokens(logits, config, *row.gen).item<int64_t>();
  std::vector<Row> before = rows_;  // the batch unchanged if the repack throws
  rows_.push_back(std::move(row));
  try {
    repack();
  } catch (...) {
    rows_ = std::move(before);
    throw;
  }
}

void LlavaDecodeBatch::cancel(uint64_t id) {
  auto it = std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) { return r.id == id; });
  if (it == rows_.end()) return;
  rows_.erase(it);
  torch::NoGradGuard no_grad;
  repack();
}

// One cache, mask and write column for the current rows: each row's tokens end at the longest row's length, and
// there is room for every row's remaining tokens (each step adds one column and takes one from every row's room).
void LlavaDecodeBatch::repack() {
  int64_t t = 0, room = 0;
  for (const Row& r : rows_) {
    t = std::max(t, r.length);
    room = std::max(room, r.config.max_new_tokens - static_cast<int64_t>(r.out.token_ids.size()));
  }
  const int64_t b = static_cast<int64_t>(rows_.size()), capacity = (t + room + 1 + 127) / 128 * 128;
  const auto& text = m_.config_.text;
  const auto opts = torch::TensorOptions().dtype(m_.dtype_).device(m_.device_);
  std::vector<LayerCache> caches(m_.llama_->layers->size());
  for (auto& c : caches) {
    c.k = torch::zeros({b, text.num_key_value_heads, capacity, text.head_dim}, opts);
    c.v = torch::zeros_like(c.k);
  }
  torch::Tensor mask = torch::zeros({b, capacity}, opts.dtype(torch::kInt64));
  for (int64_t i = 0; i < b; ++i) {
    const Row& r = rows_[static_cast<size_t>(i)];
    for (size_t l = 0; l < caches.size(); ++l) {
      const LayerCache& from = r.slot >= 0 ? caches_[l] : r.prefill[l];
      const int64_t row = r.slot >= 0 ? r.slot : 0, start = r.slot >= 0 ? t_ - r.length : 0;
      caches[l].k[i].narrow(1, t - r.length, r.length).copy_(from.k[row].narrow(1, start, r.length));
      caches[l].v[i].narrow(1, t - r.length, r.length).copy_(from.v[row].narrow(1, start, r.length));
    }
    mask[i].narrow(0, t - r.length, r.length).fill_(1);
  }
  caches_ = std::move(caches);
  mask_ = mask;
  t_ = t;
  for (int64_t i = 0; i < b; ++i) {
    rows_[static_cast<size_t>(i)].slot = i;
    rows_[static_cast<size_t>(i)].prefill.clear();
  }
}

// Feeds every row its pending token at column t_ and chooses the next one.
void LlavaDecodeBatch::forward() {
  std::vector<int64_t> feed, pos;
  for (const Row& r : rows_) {
    feed.push_back(r.pending);
    pos.push_back(r.length);
  }
  const int64_t b = static_cast<int64_t>(rows_.size());
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
  const torch::Tensor tokens = torch::tensor(feed, long_opts).view({b, 1}).to(m_.device_);
  const torch::Tensor positions = torch::tensor(pos, long_opts).view({b, 1}).to(m_.device_);
  const torch::Tensor write_at = torch::full({1}, t_, long_opts.device(m_.device_));
  mask_.select(1, t_).fill_(1);
  // On a GPU the attention spans whole 128-slot buckets (the unfilled slots hidden by the mask), as generate()'s
  // graphs do: a new key length every step would make the attention kernels plan anew for each (a serve request
  // of 128 tokens took 5 s instead of 1.3 s on an H200 until they had seen every length once).
  const int64_t span = m_.device_.is_cuda() ? std::min(mask_.size(1), (t_ + 1 + 127) / 128 * 128) : t_ + 1;
  for (auto& c : caches_) {
    c.write_at = write_at;
    c.span = span;
  }
  const torch::Tensor h = m_.llama_->forward(m_.llama_->embed_tokens(tokens), mask_.narrow(1, 0, span), positions,
                                             &caches_);
  const torch::Tensor logits = m_.llama_->lm_head_forward(h.select(1, 0)).to(torch::kFloat32);  // (B, V)
  ++t_;
  for (int64_t i = 0; i < b; ++i) {
    Row& r = rows_[static_cast<size_t>(i)];
    ++r.length;
    r.pending = m_.next_tokens(logits.narrow(0, i, 1), r.config, *r.gen).item<int64_t>();
  }
}

bool LlavaDecodeBatch::record(Row& r) {
  if (r.config.max_new_tokens <= 0) return true;
  const int64_t eos = m_.tokenizer_ ? m_.tokenizer_->eos_id() : 2;
  if (record_token(r.out, r.pending, eos, r.config, m_.tokenizer_.get())) return true;
  return static_cast<int64_t>(r.out.token_ids.size()) >= r.config.max_new_tokens;
}

std::string without_incomplete_tail(std::string text) {
  static const std::string replacement = "\xEF\xBF\xBD";
  while (text.size() >= 3 && text.compare(text.size() - 3, 3, replacement) == 0) text.resize(text.size() - 3);
  return text;
}

std::vector<BatchEvent> LlavaDecodeBatch::step() {
  Inference scope(m_);
  std::vector<BatchEvent> events;
  std::vector<Row> going;
  for (Row& r : rows_) {
    BatchEvent ev;
    ev.id = r.id;
    ev.finished = record(r);
    ev.text = m_.reply_text(r.out);
    if (!ev.finished) ev.text = without_incomplete_tail(std::move(ev.text));
    if (ev.finished) {
      m_.finish_text(r.out, r.config);
      ev.result = r.out;
    } else {
      going.push_back(std::move(r));
    }
    events.push_back(std::move(ev));
  }
  const bool left = going.size() != rows_.size();
  rows_ = std::move(going);
  if (left) repack();
  if (!rows_.empty()) forward();
  return events;
}

}  // namespace mmr::llava
