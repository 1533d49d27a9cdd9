// LLaVA-1.5's text side, exactly as it trained: the vicuna_v1 conversation template (llava/conversation.py),
// <image> placement (preprocess_multimodal), tokenizer_image_token (llava/mm_utils.py) and preprocess_v1's
// label masking (llava/train/train.py), on top of the legacy slow LlamaTokenizer (tokenizer.h).
//
// Deliberately not here: images and the expansion of the -200 placeholder into patch features (the model's
// job), padding and truncation to a maximum length (the caller's, so truncations are counted), other
// templates (llava_llama_2, mpt, plain), mm_use_im_start_end (LLaVA-1.5 trained without it).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/api/chat_api.h"
#include "core/lib/tokenizer/tokenizer.h"

namespace mmr::llava {

using mmr::kIgnoreIndex;         // LLaVA's IGNORE_INDEX and IMAGE_TOKEN_INDEX, defined once in core/api/chat_api.h
using mmr::kImagePlaceholderId;
inline constexpr std::string_view kImageToken = "<image>";

// vicuna_v1 (conv_vicuna_v1 in llava/conversation.py).
inline constexpr std::string_view kVicunaV1System =
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.";
inline constexpr std::string_view kVicunaV1UserRole = "USER";
inline constexpr std::string_view kVicunaV1AssistantRole = "ASSISTANT";
inline constexpr std::string_view kVicunaV1Sep = " ";
inline constexpr std::string_view kVicunaV1Sep2 = "</s>";

// One message. `role` in LLaVA's data form ("human" / "gpt") or the template's ("USER" / "ASSISTANT"),
// case-insensitive; "user" / "assistant" are accepted too.
struct Turn {
  std::string role;
  std::string text;
};

enum class Speaker { Human, Gpt };

// Throws DataError naming the role when it is none of the above.
Speaker speaker_of(const Turn& turn);

// Turns from a dataset row's conversation: LLaVA's [{"from": "human", "value": "..."}, ...] or
// [["USER", "..."], ["ASSISTANT", "..."]] pairs. Throws DataError naming the index and what was found.
std::vector<Turn> parse_turns(const nlohmann::json& conversation);

// preprocess_multimodal: every message that contains <image> has all of them removed, is stripped
// (Python str.strip), and gets one "<image>\n" in front. Messages without <image> are left alone.
std::vector<Turn> move_image_to_front(std::vector<Turn> turns);

// The vicuna_v1 prompt: system + " " then "USER: q ASSISTANT: a</s>" per round (sep " " after a user
// message, sep2 "</s>" after an assistant one). Turns must alternate human, gpt, human, ...
// for_generation: the last assistant reply (if the turns end with one) is cut and the prompt ends
// "... ASSISTANT:", as LLaVA's eval scripts build it with append_message(roles[1], None).
std::string vicuna_v1_prompt(const std::vector<Turn>& turns, bool for_generation);

// tokenizer_image_token: the prompt split on "<image>", each chunk encoded with BOS, the chunks joined by one
// `image_token_index` each; only the first chunk's BOS is kept.
std::vector<int64_t> tokenizer_image_token(const Tokenizer& tokenizer, const std::string& prompt,
                                           int64_t image_token_index = kImagePlaceholderId);

struct EncodedConversation {
  std::vector<int64_t> input_ids;  // (T) with one kImagePlaceholderId per image
  std::vector<int64_t> labels;     // (T) kIgnoreIndex except assistant replies and their </s>
  // LLaVA masks the whole row when its round-by-round length disagrees with the full encoding (it prints
  // "WARNING: tokenization mismatch" and trains on nothing from the row). We do the same and say so here.
  bool mismatch = false;
  std::string mismatch_detail;  // "tokenization mismatch: <rounds> vs. <total>" when mismatch
  std::string prompt;           // the vicuna_v1 text that was encoded
  // Placeholders in input_ids. LLaVA does not add a missing <image>: a row with an image whose text has none
  // gives 0 here, and the caller decides (LLaVA's eval scripts prepend "<image>\n" to the question themselves).
  int64_t num_images = 0;
};

// preprocess_v1 for one conversation (after preprocess_multimodal when has_image). A first turn that is not
// from the human is dropped, as LLaVA does; roles must then alternate (DataError otherwise).
EncodedConversation encode_conversation_v1(const Tokenizer& tokenizer, const std::vector<Turn>& turns,
                                           bool has_image);

struct EncodedPrompt {
  std::vector<int64_t> input_ids;
  std::string prompt;
  int64_t num_images = 0;
};

// The generation prompt ("... ASSISTANT:") for the same turns, encoded like encode_conversation_v1.
EncodedPrompt encode_generation_prompt_v1(const Tokenizer& tokenizer, const std::vector<Turn>& turns,
                                          bool has_image);

// Python's str.strip() (Unicode whitespace as str.isspace defines it) on UTF-8 text.
std::string python_strip(std::string_view text);

}  // namespace mmr::llava
