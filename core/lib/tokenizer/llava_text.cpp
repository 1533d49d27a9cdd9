// LLaVA-1.5's conversation encoding (vicuna_v1 + preprocess_v1), written from llava/conversation.py,
// llava/mm_utils.py and llava/train/train.py. Each function says which reference behaviour it keeps.
//
// Deliberately not here: max-length truncation. preprocess_v1 skips its mismatch check when the rounds reach
// tokenizer.model_max_length (the text-only path truncates there); we never truncate, so the check always runs
// and truncation is left to the caller, who counts it.
#include "core/lib/tokenizer/llava_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/api/error.h"

namespace mmr::llava {
namespace {

// Python's str.split(sep): every piece, empty ones included ("a</s>" -> ["a", ""]).
std::vector<std::string> split_all(const std::string& text, std::string_view sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = text.find(sep, start);
    if (at == std::string::npos) break;
    out.push_back(text.substr(start, at - start));
    start = at + sep.size();
  }
  out.push_back(text.substr(start));
  return out;
}

// Code points for which Python's str.isspace() is true.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Decodes the UTF-8 code point starting at text[i]; *len receives its byte length (1 for a stray byte, which
// is never whitespace, so malformed text is left as it is).
char32_t decode_at(std::string_view text, std::size_t i, std::size_t* len) {
  const auto b = static_cast<unsigned char>(text[i]);
  std::size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > text.size()) {
    *len = 1;
    return 0xFFFD;
  }
  char32_t c = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (std::size_t k = 1; k < n; ++k) {
    const auto cb = static_cast<unsigned char>(text[i + k]);
    if ((cb >> 6) != 0x2) {
      *len = 1;
      return 0xFFFD;
    }
    c = (c << 6) | (cb & 0x3F);
  }
  *len = n;
  return c;
}

std::string lower_ascii(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// LLaVA's preprocess_v1 asserts `role == conv.roles[j % 2]`; we say which turn broke it instead.
void check_alternation(const std::vector<Turn>& turns) {
  for (std::size_t j = 0; j < turns.size(); ++j) {
    const Speaker expected = j % 2 == 0 ? Speaker::Human : Speaker::Gpt;
    if (speaker_of(turns[j]) != expected) {
      throw DataError(fmt::format("conversation turn {}: expected a {} message, found role '{}' (vicuna_v1 turns "
                                  "alternate human, gpt, human, ...)",
                                  j, expected == Speaker::Human ? "human" : "gpt", turns[j].role));
    }
  }
}

// preprocess_v1: "Skip the first one if it is not from human".
std::vector<Turn> drop_leading_gpt(std::vector<Turn> turns) {
  if (!turns.empty() && speaker_of(turns.front()) != Speaker::Human) turns.erase(turns.begin());
  return turns;
}

std::vector<int64_t> encode_prompt(const Tokenizer& tokenizer, const std::string& prompt, bool has_image) {
  // preprocess_v1 tokenizes with tokenizer_image_token only when the row has an image; a text-only row goes
  // through tokenizer(...) directly, so a literal "<image>" there stays text.
  return has_image ? tokenizer_image_token(tokenizer, prompt) : tokenizer.encode(prompt, /*add_bos=*/true);
}

int64_t count_images(const std::vector<int64_t>& ids) {
  return std::count(ids.begin(), ids.end(), kImagePlaceholderId);
}

}  // namespace

std::string python_strip(std::string_view text) {
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t len = 0;
    if (!is_python_space(decode_at(text, begin, &len))) break;
    begin += len;
  }
  std::size_t end = text.size();
  while (end > begin) {
    std::size_t start = end - 1;  // back up to the first byte of the last code point
    while (start > begin && (static_cast<unsigned char>(text[start]) >> 6) == 0x2) --start;
    std::size_t len = 0;
    const char32_t c = decode_at(text, start, &len);
    if (start + len != end || !is_python_space(c)) break;
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

Speaker speaker_of(const Turn& turn) {
  const std::string role = lower_ascii(turn.role);
  if (role == "human" || role == "user") return Speaker::Human;
  if (role == "gpt" || role == "assistant") return Speaker::Gpt;
  throw DataError(fmt::format("unknown conversation role '{}': expected human/gpt (LLaVA data) or "
                              "USER/ASSISTANT (vicuna_v1)",
                              turn.role));
}

std::vector<Turn> parse_turns(const nlohmann::json& conversation) {
  if (!conversation.is_array()) {
    throw DataError(fmt::format("conversation: expected a list of turns, found {}", conversation.type_name()));
  }
  std::vector<Turn> turns;
  for (std::size_t i = 0; i < conversation.size(); ++i) {
    const nlohmann::json& t = conversation[i];
    if (t.is_object() && t.contains("from") && t.contains("value") && t["from"].is_string() &&
        t["value"].is_string()) {
      turns.push_back({t["from"].get<std::string>(), t["value"].get<std::string>()});
    } else if (t.is_array() && t.size() == 2 && t[0].is_string() && t[1].is_string()) {
      turns.push_back({t[0].get<std::string>(), t[1].get<std::string>()});
    } else {
      throw DataError(fmt::format("conversation turn {}: expected {{\"from\": \"human\"|\"gpt\", \"value\": "
                                  "\"...\"}} or [role, text], found {}",
                                  i, t.dump()));
    }
    speaker_of(turns.back());  // reject unknown roles at parse time, where the index is known
  }
  return turns;
}

std::vector<Turn> move_image_to_front(std::vector<Turn> turns) {
  // preprocess_multimodal, for every sentence containing DEFAULT_IMAGE_TOKEN:
  //   value = value.replace('<image>', '').strip(); value = '<image>\n' + value; value = value.strip()
  for (Turn& turn : turns) {
    if (turn.text.find(kImageToken) == std::string::npos) continue;
    std::string without;
    for (const std::string& piece : split_all(turn.text, kImageToken)) without += piece;
    turn.text = python_strip(std::string(kImageToken) + "\n" + python_strip(without));
  }
  return turns;
}

std::string vicuna_v1_prompt(const std::vector<Turn>& turns, bool for_generation) {
  std::vector<Turn> messages = turns;
  if (for_generation && !messages.empty() && speaker_of(messages.back()) == Speaker::Gpt) messages.pop_back();
  if (messages.empty()) throw DataError("conversation has no human message to build a vicuna_v1 prompt from");
  check_alternation(messages);

  // Conversation.get_prompt, SeparatorStyle.TWO: seps alternate by message index, not by role.
  // `if message:` is falsy for None and for "", so an empty message also renders as "ROLE:" with no separator.
  const std::string_view seps[2] = {kVicunaV1Sep, kVicunaV1Sep2};
  std::string out = std::string(kVicunaV1System) + std::string(kVicunaV1Sep);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string_view role =
        speaker_of(messages[i]) == Speaker::Human ? kVicunaV1UserRole : kVicunaV1AssistantRole;
    out += role;
    if (messages[i].text.empty()) {
      out += ":";
    } else {
      out += fmt::format(": {}{}", messages[i].text, seps[i % 2]);
    }
  }
  if (for_generation) out += std::string(kVicunaV1AssistantRole) + ":";  // append_message(roles[1], None)
  return out;
}

std::vector<int64_t> tokenizer_image_token(const Tokenizer& tokenizer, const std::string& prompt,
                                           int64_t image_token_index) {
  // prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split('<image>')]; when the first chunk
  // starts with BOS it is kept once (offset 1) and every chunk loses its first id, the BOS of its own encode.
  std::vector<std::vector<int64_t>> chunks;
  for (const std::string& chunk : split_all(prompt, kImageToken)) chunks.push_back(tokenizer.encode(chunk, true));

  std::vector<int64_t> out;
  std::size_t offset = 0;
  if (!chunks.empty() && !chunks[0].empty() && chunks[0][0] == tokenizer.bos_id()) {
    offset = 1;
    out.push_back(chunks[0][0]);
  }
  for (std::size_t k = 0; k < chunks.size(); ++k) {
    // insert_separator puts [image_token_index] * (offset + 1) between chunks, also sliced by [offset:]:
    // exactly one placeholder per <image>.
    if (k > 0) out.push_back(image_token_index);
    const auto& chunk = chunks[k];
    out.insert(out.end(), chunk.begin() + std::min(offset, chunk.size()), chunk.end());
  }
  return out;
}

namespace {

// The vicuna_v1 text of the turns and its ids; with for_generation, cut before the last reply ("... ASSISTANT:").
EncodedPrompt encode_vicuna_v1(const Tokenizer& tokenizer, const std::vector<Turn>& turns, bool has_image,
                               bool for_generation) {
  // LazySupervisedDataset: preprocess_multimodal only for rows that have an image.
  const std::vector<Turn> conversation = drop_leading_gpt(has_image ? move_image_to_front(turns) : turns);
  EncodedPrompt enc;
  enc.prompt = vicuna_v1_prompt(conversation, for_generation);
  enc.input_ids = encode_prompt(tokenizer, enc.prompt, has_image);
  enc.num_images = count_images(enc.input_ids);
  return enc;
}

}  // namespace

EncodedConversation encode_conversation_v1(const Tokenizer& tokenizer, const std::vector<Turn>& turns,
                                           bool has_image) {
  EncodedPrompt text = encode_vicuna_v1(tokenizer, turns, has_image, /*for_generation=*/false);
  EncodedConversation enc;
  enc.prompt = std::move(text.prompt);
  enc.input_ids = std::move(text.input_ids);
  enc.labels = enc.input_ids;
  enc.num_images = text.num_images;

  const auto n = static_cast<int64_t>(enc.labels.size());
  auto mask = [&](int64_t from, int64_t to) {  // Python's target[from:to] = IGNORE_INDEX, indices clamped
    from = std::clamp<int64_t>(from, 0, n);
    to = std::clamp<int64_t>(to, 0, n);
    for (int64_t i = from; i < to; ++i) enc.labels[i] = kIgnoreIndex;
  };

  // total_len = target.ne(tokenizer.pad_token_id).sum()
  const int64_t total_len =
      n - static_cast<int64_t>(std::count(enc.input_ids.begin(), enc.input_ids.end(), tokenizer.pad_id()));

  // Rounds are split on sep2 ("</s>"); within a round the instruction ends at " ASSISTANT: ". Each round is
  // encoded on its own (with BOS, which stands in for the previous round's </s> in the count), and the
  // instruction length takes "- 2": its BOS and the "▁" that SentencePiece gives the trailing space, which in
  // the full encoding merges into the reply's first piece. These are LLaVA's offsets for the legacy tokenizer.
  const std::string round_sep = std::string(kVicunaV1Sep) + std::string(kVicunaV1AssistantRole) + ": ";
  int64_t cur_len = 1;
  mask(0, cur_len);  // BOS
  for (const std::string& round : split_all(enc.prompt, kVicunaV1Sep2)) {
    if (round.empty()) break;
    const std::vector<std::string> parts = split_all(round, round_sep);
    if (parts.size() != 2) break;  // LLaVA stops masking here; the mismatch check below then catches it
    const auto round_len = static_cast<int64_t>(encode_prompt(tokenizer, round, has_image).size());
    const auto instruction_len =
        static_cast<int64_t>(encode_prompt(tokenizer, parts[0] + round_sep, has_image).size()) - 2;
    mask(cur_len, cur_len + instruction_len);
    cur_len += round_len;
  }
  mask(cur_len, n);

  if (cur_len != total_len) {
    mask(0, n);
    enc.mismatch = true;
    enc.mismatch_detail = fmt::format("tokenization mismatch: {} vs. {}", cur_len, total_len);
  }
  return enc;
}

EncodedPrompt encode_generation_prompt_v1(const Tokenizer& tokenizer, const std::vector<Turn>& turns,
                                          bool has_image) {
  return encode_vicuna_v1(tokenizer, turns, has_image, /*for_generation=*/true);
}

}  // namespace mmr::llava
