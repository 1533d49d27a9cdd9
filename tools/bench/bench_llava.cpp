// bench_llava: load time, one DPO-shaped forward/backward and greedy decoding speed of the llava model plugin at
// a published shape with random weights — the numbers the README's performance table quotes. Its peer is
// tools/bench/hf_llava_peer.py (HF transformers + PEFT on the same GPU, same shapes), run in the same job.
//
//   bench_llava --shape llava-1.5-13b --dtype bfloat16 --device cuda --tokenizer tests/data/tiny-llava/model \
//               --image tests/data/tiny-llava/images/wide.png --new-tokens 128 --batches 1,8
//
// Prints one JSON object per measurement on stdout.
#include <chrono>
#include <iostream>
#include <sstream>

#include "bench_common.h"
#include "plugins/models/llava/llava.h"

using bench::Clock;
using bench::seconds_since;
using bench::sync;


int main(int argc, char** argv) {
  mmr::llava::LlavaOptions o = bench::published_shape();
  std::string image, batches = "1,8";
  int64_t new_tokens = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--shape") o.shape = v;
    else if (k == "--dtype") o.dtype = v;
    else if (k == "--device") o.device = v;
    else if (k == "--tokenizer") o.tokenizer = v;
    else if (k == "--image") image = v;
    else if (k == "--new-tokens") new_tokens = std::stoll(v);
    else if (k == "--batches") batches = v;
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
  try {
    const auto loaded = bench::load_timed(o);
    mmr::llava::LlavaModel& model = *loaded;
    mmr::ChatSample s;
    s.turns = {{"human", "<image>\nDescribe the image in detail."}};
    s.images = {image};
    mmr::GenerationConfig g;
    g.max_new_tokens = new_tokens;
    g.stop_at_eos = false;
    std::stringstream ss(batches);
    for (std::string b; std::getline(ss, b, ',');) {
      const int64_t n = std::stoll(b);
      std::vector<mmr::ChatSample> prompts(static_cast<size_t>(n), s);
      mmr::GenerationConfig warm = g;
      warm.max_new_tokens = 4;
      model.generate(prompts, warm);  // warm-up: kernels, allocator
      sync(model.device());
      const auto t1 = Clock::now();
      const auto out = model.generate(prompts, g);
      sync(model.device());
      const double secs = seconds_since(t1);
      int64_t tokens = 0;
      for (const auto& r : out) tokens += static_cast<int64_t>(r.token_ids.size());
      std::cout << "{\"what\": \"greedy_decode\", \"batch\": " << n << ", \"new_tokens\": " << tokens
                << ", \"seconds\": " << secs << ", \"tokens_per_second\": " << tokens / secs << "}" << std::endl;
    }
  } catch (const std::exception& e) {
    std::cerr << "bench_llava: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
