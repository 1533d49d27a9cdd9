// The OpenAI chat-completions wire format, translated to and from the model interface (core/api/chat_api.h) for
// `runner serve`. Pure functions, no sockets: the server (serve.cpp) calls them, the tests call them directly.
//
// Messages → one ChatSample: "user" turns become "human", "assistant" turns "gpt"; system messages (only before
// the first user message) are put before the first user turn's text, "<system>\n\n<user>", since LLaVA's template
// has a fixed system line of its own. A user turn's image parts become "<image>\n" in front of its text, one per
// image, as LLaVA's data has them, and their files in order. Images: data:image/<png|jpeg|gif|bmp|webp>;base64,...
// URLs are decoded (core/lib/util/base64.h, Base64Rules::kStrict) into `image_dir`; file:///abs/path and local paths are used as they are when they lie under
// one of the operator's allowed folders (RequestLimits::allowed_media_dirs, `--allowed-media-dir`; none: refused,
// as vLLM's --allowed-local-media-path); http(s) URLs are refused (the server fetches nothing).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/api/chat_api.h"
#include "core/api/error.h"

namespace mmr::serve {

// Bad input from a client: becomes HTTP 400 with this message.
class RequestError : public Error {
 public:
  using Error::Error;
};

struct ChatRequest {
  ChatSample sample;
  GenerationConfig config;
  std::string model;           // as the client named it ("" when absent)
  bool stream = false;         // "stream": true: server-sent events of chat.completion.chunk
  bool include_usage = false;  // "stream_options": {"include_usage": true}: a last chunk with the usage
};

struct RequestLimits {
  int64_t default_max_tokens = 512;
  int64_t max_tokens_limit = 4096;
  int64_t max_images = 8;
  // Width x height of one image, read from its header before the image is decoded: a small file can claim a huge
  // image (a 164 KB PNG of 13000 x 13000 took 6.6 s and 1.25 GB to decode, with the model waiting). 50 MP keeps
  // photos of today's phones (48 MP); LLaVA sees 336 x 336 of any of them.
  int64_t max_image_pixels = 50'000'000;
  int64_t max_messages = 256;
  std::vector<std::filesystem::path> allowed_media_dirs;  // canonical folders local images may come from
};

// Parses a request body; images from data: URLs are written into `image_dir` (created by the caller).
ChatRequest parse_chat_request(const nlohmann::json& body, const std::filesystem::path& image_dir,
                               const RequestLimits& limits);

// The chat.completion object: id, object, created, model, choices[0].{index, message, finish_reason}, usage.
nlohmann::json chat_completion(const Generation& g, const std::string& id, const std::string& model, int64_t created);

// {"error": {"message", "type", "code"}} as OpenAI sends it.
nlohmann::json error_body(const std::string& message, const std::string& type);

// ---- streaming (stream: true) ----

// OpenAI's finish_reason for a Generation: "length" when max_tokens ran out, else "stop".
std::string finish_reason(const Generation& g);

// One chat.completion.chunk: choices[0] = {index 0, delta, finish_reason (null while streaming)}; "usage": null
// when the client asked for usage (OpenAI's shape: the usage comes in a last chunk of its own, usage_chunk).
nlohmann::json completion_chunk(const std::string& id, const std::string& model, int64_t created,
                                const nlohmann::json& delta, const nlohmann::json& finish, bool include_usage);
// The last chunk of stream_options.include_usage: no choices, the usage of the whole reply.
nlohmann::json usage_chunk(const Generation& g, const std::string& id, const std::string& model, int64_t created);
// One server-sent event: "data: <json>\n\n" (invalid UTF-8 replaced by U+FFFD, as the non-streamed reply).
std::string sse_event(const nlohmann::json& data);

// The length of the start of `text` that more tokens can no longer change: it leaves out an incomplete UTF-8
// sequence at the end, trailing U+FFFD (a byte-level token whose character is not complete yet), and the
// suffix from the earliest place where a stop string begins or may be beginning (its text is cut if it does).
size_t settled_length(const std::string& text, const std::vector<std::string>& stop_strings);

// The deltas of one streamed reply: what is settled of each new text, then the rest of the final text, so the
// deltas concatenated are the final text (the non-streamed reply's content).
class DeltaStream {
 public:
  explicit DeltaStream(std::vector<std::string> stop_strings) : stops_(std::move(stop_strings)) {}
  // The new settled text of the reply so far (decoded from all its tokens); "" when nothing new is settled.
  std::string next(const std::string& text_so_far);
  // The rest of the final text (Generation::text, stop strings cut).
  std::string finish(const std::string& final_text);
  // False when a later text did not start with what was already sent (cannot happen with a tokenizer whose
  // decoding of more tokens extends that of fewer; the server logs it).
  bool consistent() const { return consistent_; }
  const std::string& sent() const { return sent_; }

 private:
  std::vector<std::string> stops_;
  std::string sent_;
  bool consistent_ = true;
};

}  // namespace mmr::serve
