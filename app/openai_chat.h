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
  std::string model;  // as the client named it ("" when absent)
};

struct RequestLimits {
  int64_t default_max_tokens = 512;
  int64_t max_tokens_limit = 4096;
  int64_t max_images = 8;
  std::vector<std::filesystem::path> allowed_media_dirs;  // canonical folders local images may come from
};

// Parses a request body; images from data: URLs are written into `image_dir` (created by the caller).
ChatRequest parse_chat_request(const nlohmann::json& body, const std::filesystem::path& image_dir,
                               const RequestLimits& limits);

// The chat.completion object: id, object, created, model, choices[0].{index, message, finish_reason}, usage.
nlohmann::json chat_completion(const Generation& g, const std::string& id, const std::string& model, int64_t created);

// {"error": {"message", "type", "code"}} as OpenAI sends it.
nlohmann::json error_body(const std::string& message, const std::string& type);

}  // namespace mmr::serve
