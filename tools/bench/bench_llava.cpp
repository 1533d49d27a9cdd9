// bench_llava: load time and greedy decoding speed of the llava model plugin at a published shape with random
// weights — prefill and per-token time apart, with and without a LoRA adapter, with and without CUDA graphs and the
// decoding step's attention kernels (decode_attention.cu; with the greedy tokens of both compared). Its
// peer is tools/bench/hf_llava_peer.py (HF transformers on the same GPU, same shapes), run in the same job by
// tools/gpu_bench.sh.
//
//   bench_llava --shape llava-1.5-13b --dtype bfloat16 --device cuda --tokenizer tests/data/tiny-llava/model \
//               --image a.png,b.png,... --new-tokens 128 --batches 1,8 [--adapter-rank 128]
//               (row i of a batch asks about image i of the list, cycled: give as many as the largest batch so that
//               rows share no prefill, as in HF's peer; tools/gpu_bench.sh makes 8 of random pixels)
//               [--decode-batch 1]   (continuous batching, start_batch(), instead of generate())
//               [--profile 1]        (CUDA builds: where a decoding step's GPU time goes, per kernel)
//               [--profile-calls 1]  (CUDA builds: the same for a prefill, and a POPE-shaped batch of 16 over the
//                                     --image list, comma-separated)
//
// With --adapter-rank, the model carries a LoRA adapter of that rank on every language-model linear (random B, as
// a trained one; nobody trains it, so generation merges it as an evaluation does). Prints one JSON object per
// measurement on stdout.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#ifdef MMR_BENCH_PROFILE
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

#include "bench_common.h"
#include "plugins/models/llava/fast_linear.h"
#include "plugins/models/llava/llava.h"

using bench::Clock;
using bench::seconds_since;
using bench::sync;

namespace {

double timed_generate(mmr::llava::LlavaModel& model, const std::vector<mmr::ChatSample>& prompts,
                      const mmr::GenerationConfig& g, int64_t* tokens) {
  sync(model.device());
  const auto t = Clock::now();
  const auto out = model.generate(prompts, g);
  sync(model.device());
  const double secs = seconds_since(t);
  *tokens = 0;
  for (const auto& r : out) *tokens += static_cast<int64_t>(r.token_ids.size());
  return secs;
}

// Greedy, exactly `new_tokens` new tokens (EOS does not end a row).
mmr::GenerationConfig greedy(int64_t new_tokens) {
  mmr::GenerationConfig g;
  g.max_new_tokens = new_tokens;
  g.stop_at_eos = false;
  return g;
}

// n rows: row i asks about image i of --image's list (cycled when the list is shorter), so that with as many
// images as rows no two rows share a prefill, as HF's peer's rows (distinct random pixels) do not.
std::vector<mmr::ChatSample> rows_of(const std::vector<mmr::ChatSample>& samples, int64_t n) {
  std::vector<mmr::ChatSample> rows;
  for (int64_t i = 0; i < n; ++i) rows.push_back(samples[static_cast<size_t>(i) % samples.size()]);
  return rows;
}

// One batch size: a warm-up at the full length (kernels, allocator, graphs), the prefill alone (one new token),
// then the full generation; per-token time is what the full run adds to the prefill.
void measure(mmr::llava::LlavaModel& model, const std::vector<mmr::ChatSample>& samples, int64_t n,
             int64_t new_tokens, const std::string& variant) {
  const std::vector<mmr::ChatSample> prompts = rows_of(samples, n);
  const mmr::GenerationConfig g = greedy(new_tokens), one = greedy(1);
  int64_t tokens = 0;
  timed_generate(model, prompts, g, &tokens);
  timed_generate(model, prompts, one, &tokens);
  double prefill = 1e30;
  for (int i = 0; i < 3; ++i) prefill = std::min(prefill, timed_generate(model, prompts, one, &tokens));
  const double secs = timed_generate(model, prompts, g, &tokens);
  const double per_step = (secs - prefill) / static_cast<double>(new_tokens - 1);
  std::cout << "{\"what\": \"greedy_decode\", \"variant\": \"" << variant << "\", \"batch\": " << n
            << ", \"images\": " << std::min<size_t>(static_cast<size_t>(n), samples.size())
            << ", \"new_tokens\": " << tokens << ", \"seconds\": " << secs << ", \"tokens_per_second\": " << tokens / secs
            << ", \"prefill_seconds\": " << prefill << ", \"step_ms\": " << 1e3 * per_step
            << ", \"decode_tokens_per_second\": " << static_cast<double>(n) / per_step << "}" << std::endl;
}

#ifdef MMR_BENCH_PROFILE
// GPU time per kernel name (µs) and launch count while `work` runs, from the Kineto profiler (CUPTI).
// With `trace`, the whole timeline (host ops and kernels) is saved there too, in Chrome's trace format.
std::map<std::string, std::pair<double, int64_t>> kernel_times(const std::function<void()>& work,
                                                               const std::string& trace = "") {
  namespace tp = torch::autograd::profiler;
  const tp::ProfilerConfig config(tp::ProfilerState::KINETO);
  const std::set<tp::ActivityType> activities = {tp::ActivityType::CPU, tp::ActivityType::CUDA};
  tp::prepareProfiler(config, activities);
  tp::enableProfiler(config, activities);
  work();
  const auto result = tp::disableProfiler();
  if (!trace.empty()) result->save(trace);
  std::map<std::string, std::pair<double, int64_t>> out;
  for (const auto& e : result->events())
    if (e.deviceType() == c10::DeviceType::CUDA) {
      auto& [us, calls] = out[e.name()];
      us += static_cast<double>(e.durationNs()) / 1e3;
      ++calls;
    }
  return out;
}

// Where a decoding step's GPU time goes: the kernels of a full generation minus those of the prefill alone (one
// new token), per step, largest first, with the sum of all beside the wall-clock step.
void profile(mmr::llava::LlavaModel& model, const std::vector<mmr::ChatSample>& samples, int64_t n,
             int64_t new_tokens) {
  const std::vector<mmr::ChatSample> prompts = rows_of(samples, n);
  const mmr::GenerationConfig g = greedy(new_tokens), one = greedy(1);
  int64_t tokens = 0;
  timed_generate(model, prompts, g, &tokens);  // warm-up: graphs captured
  const auto prefill = kernel_times([&] { timed_generate(model, prompts, one, &tokens); });
  double wall = 0;
  const auto full = kernel_times([&] { wall = timed_generate(model, prompts, g, &tokens); });
  const double steps = static_cast<double>(new_tokens - 1);
  std::vector<std::pair<double, std::string>> rows;
  double total = 0;
  for (const auto& [name, tc] : full) {
    const auto it = prefill.find(name);
    const double us = (tc.first - (it == prefill.end() ? 0.0 : it->second.first)) / steps;
    const double calls = static_cast<double>(tc.second - (it == prefill.end() ? 0 : it->second.second)) / steps;
    if (calls <= 0) continue;
    total += us;
    rows.emplace_back(us, name);
    std::ostringstream line;
    line << "{\"what\": \"profile_kernel\", \"batch\": " << n << ", \"us_per_step\": " << us
         << ", \"calls_per_step\": " << calls << ", \"kernel\": \"" << name.substr(0, 160) << "\"}";
    rows.back().second = line.str();
  }
  std::sort(rows.rbegin(), rows.rend());
  std::cout << "{\"what\": \"profile\", \"batch\": " << n << ", \"kernel_us_per_step\": " << total
            << ", \"kernel_names\": " << rows.size() << ", \"generate_seconds\": " << wall << "}" << std::endl;
  for (size_t i = 0; i < rows.size() && i < 30; ++i) std::cout << rows[i].second << std::endl;
}

// Where one call of `work` spends its time: wall clock (unprofiled, best of 3) against the GPU's kernel time, and
// the largest kernels. A wall far above the kernels' sum means the GPU waits for the host.
void profile_call(const std::string& what, const std::function<void()>& work) {
  work();  // warm-up
  double wall = 1e30;
  for (int i = 0; i < 3; ++i) {
    const auto t = Clock::now();
    work();
    wall = std::min(wall, seconds_since(t));
  }
  std::string trace;  // MMR_BENCH_TRACE=dir: the timeline of each profiled call, named after it
  if (const char* dir = std::getenv("MMR_BENCH_TRACE")) {
    std::string name = what;
    for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    trace = std::string(dir) + "/" + name + ".json";
  }
  const auto kernels = kernel_times(work, trace);
  std::vector<std::pair<double, std::string>> rows;
  double total = 0;
  for (const auto& [name, tc] : kernels) {
    total += tc.first;
    std::ostringstream line;
    line << "{\"what\": \"profile_kernel\", \"of\": \"" << what << "\", \"us\": " << tc.first << ", \"calls\": "
         << tc.second << ", \"kernel\": \"" << name.substr(0, 160) << "\"}";
    rows.emplace_back(tc.first, line.str());
  }
  std::sort(rows.rbegin(), rows.rend());
  std::cout << "{\"what\": \"profile_call\", \"of\": \"" << what << "\", \"wall_ms\": " << 1e3 * wall
            << ", \"kernel_ms\": " << total / 1e3 << "}" << std::endl;
  for (size_t i = 0; i < rows.size() && i < 25; ++i) std::cout << rows[i].second << std::endl;
}

// The prefill alone (one new token) at each batch size, then a POPE-shaped batch as tools/bench/pope_workload.py
// makes them: 16 questions, six about each image in turn, at most 8 new tokens.
void profile_prefill_and_eval(mmr::llava::LlavaModel& model, const std::vector<mmr::ChatSample>& samples,
                              const std::string& batches, const std::vector<std::string>& images) {
  const mmr::ChatSample& s = samples.at(0);
  int64_t tokens = 0;
  std::stringstream ss(batches);
  for (std::string b; std::getline(ss, b, ',');) {
    const std::vector<mmr::ChatSample> prompts = rows_of(samples, std::stoll(b));
    profile_call("prefill, batch " + b, [&] { timed_generate(model, prompts, greedy(1), &tokens); });
  }
  std::vector<mmr::ChatSample> pope(16, s);
  const char* objects[] = {"dining table", "person", "car", "chair", "cup", "dog", "bottle", "bicycle"};
  for (size_t i = 0; i < pope.size(); ++i) {
    pope[i].turns = {{"human", std::string("<image>\nIs there a ") + objects[i % 8] + " in the image?"}};
    pope[i].images = {images[(i / 6) % images.size()]};
  }
  profile_call("POPE-shaped batch of 16, 8 new tokens", [&] { timed_generate(model, pope, greedy(8), &tokens); });
}
#endif

// Continuous batching (LlavaModel::start_batch, what `runner serve` decodes with): n requests added at once, then
// steps until all are done; per-step time over the steps after the first (which hands out the prefill's token).
void measure_batch(mmr::llava::LlavaModel& model, const std::vector<mmr::ChatSample>& samples, int64_t n,
                   int64_t new_tokens) {
  mmr::GenerationConfig g;
  g.max_new_tokens = new_tokens;
  g.stop_at_eos = false;
  for (int round = 0; round < 2; ++round) {  // the first warms up
    auto batch = model.start_batch();
    sync(model.device());
    auto t = Clock::now();
    const std::vector<mmr::ChatSample> prompts = rows_of(samples, n);
    for (size_t i = 0; i < prompts.size(); ++i) batch->add(static_cast<uint64_t>(i), prompts[i], g);
    batch->step();
    sync(model.device());
    const double prefill = seconds_since(t);
    t = Clock::now();
    int64_t steps = 0;
    while (batch->size() > 0) batch->step(), ++steps;
    sync(model.device());
    const double per_step = seconds_since(t) / static_cast<double>(steps);
    if (round == 1)
      std::cout << "{\"what\": \"decode_batch\", \"batch\": " << n << ", \"prefill_seconds\": " << prefill
                << ", \"step_ms\": " << 1e3 * per_step << ", \"decode_tokens_per_second\": "
                << static_cast<double>(n) / per_step << "}" << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  mmr::llava::LlavaOptions o = bench::published_shape();
  std::string image, batches = "1,8";
  int64_t new_tokens = 128;
  bool decode_batch = false;  // --decode-batch 1: measure start_batch() instead of generate()
  bool profile_steps = false;  // --profile 1: per-kernel GPU time of a step (CUDA builds)
  bool profile_calls = false;  // --profile-calls 1: the same for a prefill and a POPE-shaped batch
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape") o.shape = v;
    else if (k == "--dtype") o.dtype = v;
    else if (k == "--device") o.device = v;
    else if (k == "--tokenizer") o.tokenizer = v;
    else if (k == "--image") image = v;
    else if (k == "--new-tokens") new_tokens = std::stoll(v);
    else if (k == "--batches") batches = v;
    else if (k == "--decode-batch") decode_batch = v == "1";
    else if (k == "--profile") profile_steps = v == "1";
    else if (k == "--profile-calls") profile_calls = v == "1";
    else if (k == "--adapter-rank") o.lora_r = std::stoll(v), o.lora_alpha = 2.0 * o.lora_r;
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  try {
    const auto loaded = bench::load_timed(o);
    mmr::llava::LlavaModel& model = *loaded;
    if (o.lora_r > 0) {  // B = 0 at creation would make the adapter a no-op; give it a trained adapter's values
      torch::NoGradGuard no_grad;
      for (auto& [name, p] : model.trainable_parameters())
        if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.01);
    }
    mmr::ChatSample s;
    s.turns = {{"human", "<image>\nDescribe the image in detail."}};
    std::vector<std::string> images;  // --image a.png,b.jpg: the POPE-shaped batch of --profile-calls asks about each
    std::stringstream list(image);
    for (std::string one; std::getline(list, one, ',');) images.push_back(one);
    s.images = {images.at(0)};
    std::vector<mmr::ChatSample> samples;  // one per image of the list: the decode rows
    for (const auto& one : images) {
      samples.push_back(s);
      samples.back().images = {one};
    }
    const std::string variant = o.lora_r > 0 ? "adapter_r" + std::to_string(o.lora_r) : "base";
    if (profile_calls) {
#ifdef MMR_BENCH_PROFILE
      profile_prefill_and_eval(model, samples, batches, images);
      return 0;
#else
      std::cerr << "bench_llava: --profile-calls needs a CUDA LibTorch build\n";
      return 2;
#endif
    }
    std::stringstream ss(batches);
    for (std::string b; std::getline(ss, b, ',');) {
      if (profile_steps) {
#ifdef MMR_BENCH_PROFILE
        profile(model, samples, std::stoll(b), new_tokens);
        continue;
#else
        std::cerr << "bench_llava: --profile needs a CUDA LibTorch build\n";
        return 2;
#endif
      }
      if (decode_batch) measure_batch(model, samples, std::stoll(b), new_tokens);
      else measure(model, samples, std::stoll(b), new_tokens, variant);
    }
    if (decode_batch || profile_steps) return 0;
    if (model.device().is_cuda() && o.lora_r == 0) {
      // Ours with one part of the decoding step switched (off, or an experiment on), in the same process: each
      // switch is read when a step is captured (set_adapters_enabled drops the captured graphs) or at each launch.
      auto with_env = [&](const char* env, const char* value, const char* variant_name) {
        if (env) setenv(env, value, 1);
        model.set_adapters_enabled(true);
        std::stringstream again(batches);
        for (std::string b; std::getline(again, b, ',');) measure(model, samples, std::stoll(b), new_tokens, variant_name);
        if (env) unsetenv(env);
      };
      auto turned_off = [&](const char* env, const char* variant_name) { with_env(env, "0", variant_name); };
      const auto fused = model.generate({s}, greedy(new_tokens))[0].token_ids;
      setenv("MMR_DECODE_ATTENTION", "0", 1);
      model.set_adapters_enabled(true);
      const auto aten = model.generate({s}, greedy(new_tokens))[0].token_ids;
      unsetenv("MMR_DECODE_ATTENTION");
      size_t same = 0;
      while (same < fused.size() && same < aten.size() && fused[same] == aten[same]) ++same;
      std::cout << "{\"what\": \"decode_attention_agreement\", \"same_leading_tokens\": " << same << ", \"of\": "
                << fused.size() << "}" << std::endl;
      turned_off("MMR_DECODE_ATTENTION", "base_aten_attention");  // the decoding step's attention kernel
      turned_off("MMR_PDL", "base_plain_launches");                // programmatic dependent launches (pdl.cuh)
      turned_off("MMR_CUDA_GRAPHS", "base_no_cuda_graphs");
      turned_off("MMR_GEMV_TUNE", "base_gemv_untuned");  // the GEMV's default block shapes, not the timed choice
      with_env("MMR_GEMV_CONFIG", "t1", "base_gemv_t1");  // 8 rows a block, one block per tile (before session 16)
      turned_off("MMR_GEMV_STAGED", "base_gemv_unstaged");  // the GEMV's register kernels only (no cp.async)
      with_env(nullptr, nullptr, "base_again");  // the first rows again: how far the card drifted meanwhile
      std::istringstream tuned(mmr::llava::gemv_tuning_report());
      for (std::string line; std::getline(tuned, line);)
        std::cout << "{\"what\": \"gemv_tuning\", \"choice\": \"" << line << "\"}" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_llava: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
