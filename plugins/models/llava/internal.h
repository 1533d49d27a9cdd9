// Helpers the llava plugin's source files share (not part of its interface).
#pragma once

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/api/chat_api.h"
#include "core/lib/safetensors/safetensors.h"
#include "core/lib/tokenizer/tokenizer.h"

namespace mmr::llava {

std::shared_ptr<spdlog::logger> log();

// A checkpoint tensor as a torch tensor on the CPU (a copy; the mapping stays read-only).
torch::Tensor read_tensor(const safetensors::Checkpoint& ckpt, const std::string& name);

// Records one new token of a generated row; true when the row is finished (EOS or a stop string). generate.cpp.
bool record_token(Generation& out, int64_t id, int64_t eos, const GenerationConfig& g, const Tokenizer* tokenizer);

// A streamed reply's text less its trailing U+FFFD: the tokenizer's stand-in for the bytes of an incomplete UTF-8
// sequence, which the next byte token may complete into another character (the text would then change its past).
// vLLM's incremental detokenizer waits the same way. So a BatchEvent's text only grows (decode_batch.cpp).
std::string without_incomplete_tail(std::string text);

}  // namespace mmr::llava
