// bench_train: the DPO training step of the dpo plugin (preference_forward + backward + gradient clipping + AdamW)
// at a published LLaVA-1.5 shape with random weights, bf16, LoRA r128/alpha 256 on every LM linear, trainable
// projector, activation recomputation — DESIGN §8's setting: 8 pairs x (576 image + 320 text) tokens. Its peer is
// tools/bench/hf_dpo_peer.py (HF transformers + PEFT, same shapes, same GPU), run in the same job.
//
//   bench_train --shape llava-1.5-13b --image tests/data/tiny-llava/images/wide.png --pairs 8 --steps 3
//   bench_train ... --prefix-sharing on   # each pair's prompt and image computed once (the dpo option)
//
// Prints one JSON object per measurement on stdout.
//
// Data parallel: started as rank r of W (torchrun's variables: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; one GPU
// per rank through CUDA_VISIBLE_DEVICES), each rank computes its W-th of the --pairs and the gradients are summed
// over NCCL as the trainer does (GradientReducer: buckets summed during the backward pass), so --pairs stays the
// global batch; rank 0 prints. The step's first run (the warm-up) learns the bucket order. tools/bench/dp_scaling.sh runs 1 and 2 GPUs at the 7B and 13B shapes.
#include <chrono>
#include <iostream>
#include <map>
#include <random>

#include "distributed.h"
#include "preference.h"
#include "trainer.h"
#include "bench_common.h"
#include "plugins/models/llava/llava.h"

#ifdef MMR_CUDA_ALLOCATOR_STATS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

using bench::Clock;
using bench::seconds_since;
using bench::sync;

namespace {
double peak_gib() {
#ifdef MMR_CUDA_ALLOCATOR_STATS
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
  return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
#else
  return -1;
#endif
}
}  // namespace

int main(int argc, char** argv) {
  mmr::llava::LlavaOptions o = bench::published_shape();
  o.lora_r = 128;
  o.lora_alpha = 256;
  o.train_projector = true;
  o.max_length = 4096;
  std::string image;
  int64_t pairs = 8, steps = 3, text_tokens = 320, response_tokens = 160;
  bool checkpointing = true;
  std::string prefix_sharing = "off";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape") o.shape = v;
    else if (k == "--dtype") o.dtype = v;
    else if (k == "--device") o.device = v;
    else if (k == "--image") image = v;
    else if (k == "--pairs") pairs = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--text-tokens") text_tokens = std::stoll(v);
    else if (k == "--response-tokens") response_tokens = std::stoll(v);
    else if (k == "--checkpointing") checkpointing = v == "1" || v == "true";
    else if (k == "--prefix-sharing") prefix_sharing = v;  // off, on, shared_dropout (the dpo option)
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  try {
    const mmr::train::DistributedEnv dist = mmr::train::distributed_env();
    if (pairs % dist.world != 0) throw std::runtime_error("--pairs must be a multiple of WORLD_SIZE");
    const auto loaded = bench::load_timed(o);
    mmr::llava::LlavaModel& model = *loaded;

    // Pairs of token sequences: BOS, the image placeholder, a prompt, then a response (the labelled part).
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int64_t> tok(3, 31999);
    auto sequence = [&](const std::vector<int64_t>& prompt) {
      mmr::EncodedSample s;
      s.input_ids = prompt;
      s.labels.assign(prompt.size(), mmr::kIgnoreIndex);
      for (int64_t i = 0; i < response_tokens; ++i) {
        const int64_t t = tok(rng);
        s.input_ids.push_back(t);
        s.labels.push_back(t);
      }
      s.images = {image};
      return s;
    };
    std::vector<mmr::train::PreferenceExample> examples(static_cast<size_t>(pairs));
    for (auto& e : examples) {
      std::vector<int64_t> prompt = {1, mmr::kImagePlaceholderId};
      while (static_cast<int64_t>(prompt.size()) < text_tokens - response_tokens + 1) prompt.push_back(tok(rng));
      e.chosen = sequence(prompt);
      e.rejected = sequence(prompt);
      e.ref_chosen = -1000, e.ref_rejected = -1000;
    }
    std::vector<const mmr::train::PreferenceExample*> all;  // this rank's slice of the global batch
    const int64_t per_rank = pairs / dist.world;
    for (int64_t i = dist.rank * per_rank; i < (dist.rank + 1) * per_rank; ++i) all.push_back(&examples[static_cast<size_t>(i)]);
    std::unique_ptr<mmr::train::ProcessGroup> group;
    std::unique_ptr<mmr::train::GradientReducer> reducer;
    if (dist.world > 1) {
      group = std::make_unique<mmr::train::ProcessGroup>(
          dist, mmr::train::choose_backend("auto", model.device()), model.device(), std::chrono::minutes(10));
      std::vector<torch::Tensor> tensors;
      for (const auto& p : model.trainable_parameters()) tensors.push_back(p.second);
      reducer = std::make_unique<mmr::train::GradientReducer>(*group, tensors);
    }
    mmr::train::PreferenceConfig pc;  // sigmoid, beta 0.1, summed log-probs
    pc.prefix_sharing = prefix_sharing;
    mmr::train::TrainConfig tc;
    tc.lr = 5e-5, tc.projector_lr = 2e-5;
    auto params = model.trainable_parameters();
    auto opt = mmr::train::make_optimizer(model.parameter_groups(), tc);
    model.set_training(true);
    model.set_activation_checkpointing(checkpointing);
    const int64_t tokens_per_step = pairs * 2 * (576 + text_tokens);
    // Where a step's time goes: each phase ends with a device sync (a few ms in all), printed as "phases".
    std::map<std::string, double> phases;
    auto lap = [&](const char* name, Clock::time_point& t) {
      sync(model.device());
      phases[name] = seconds_since(t);
      t = Clock::now();
    };
    for (int64_t s = 0; s <= steps; ++s) {  // step 0 warms up
      sync(model.device());
      const auto t1 = Clock::now();
      auto t = t1;
      opt->zero_grad();
      auto out = mmr::train::preference_forward(model, all, pc);
      lap("forward", t);
      if (reducer) reducer->arm();  // as the trainer: buckets summed while backward runs
      out.loss.loss.backward();
      lap("backward", t);
      if (reducer) {  // the buckets left, the wait, the sums written back, and the step's scalars (sync_step)
        reducer->finish();
        std::vector<torch::Tensor> scalars = {torch::zeros({3}, torch::kFloat64)};
        group->allreduce_sum(scalars);
        for (auto& p : params) p.second.grad().div_(static_cast<double>(dist.world));
        lap("allreduce_left", t);
      }
      std::vector<torch::Tensor> ts;
      for (auto& p : params) ts.push_back(p.second);
      torch::nn::utils::clip_grad_norm_(ts, 1.0);
      opt->step();
      lap("clip_and_adamw", t);
      const double secs = seconds_since(t1);
      if (s == 0 || dist.rank != 0) continue;
      std::cout << "{\"what\": \"dpo_train_step\", \"shape\": \"" << o.shape << "\", \"gpus\": " << dist.world
                << (group ? ", \"backend\": \"" + group->backend() + "\"" : std::string())
                << ", \"pairs\": " << pairs << ", \"prefix_sharing\": \"" << prefix_sharing << "\""
                << ", \"tokens\": " << tokens_per_step << ", \"seconds\": " << secs
                << ", \"tokens_per_second\": " << tokens_per_step / secs << ", \"loss\": " << out.loss.loss.item<double>()
                << ", \"peak_allocated_gib\": " << peak_gib() << ", \"phases\": {";
      const char* sep = "";
      for (const auto& [k, v] : phases) std::cout << sep << "\"" << k << "\": " << v, sep = ", ";
      std::cout << "}}" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_train: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
