// The chat-completions request of `runner serve` (app/openai_chat.h), as the server reads a body: JSON with the
// nesting limit (a parse error or JsonTooDeep is a 400), then parse_chat_request (a RequestError is a 400). Any
// other exception would be a 500 for the client's mistake. Local images may come from one allowed folder.
#include "app/openai_chat.h"
#include "core/lib/util/json_safe.h"
#include "fuzz/fuzz.h"

namespace {

const mmr::serve::RequestLimits& limits() {
  static const mmr::serve::RequestLimits l = [] {
    mmr::serve::RequestLimits l;
    const auto media = mmr::fuzz::scratch_dir() / "media";
    std::filesystem::create_directories(media);
    l.allowed_media_dirs.push_back(std::filesystem::canonical(media));
    return l;
  }();
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json body;
  try {
    body = mmr::parse_json_limited(mmr::fuzz::text(data, size));
  } catch (const nlohmann::json::parse_error&) {
    return 0;
  } catch (const mmr::JsonTooDeep&) {
    return 0;
  }
  const auto images = mmr::fuzz::scratch_dir() / "request";
  std::filesystem::create_directories(images);
  try {
    (void)mmr::serve::parse_chat_request(body, images, limits());
  } catch (const mmr::serve::RequestError&) {
  }
  return 0;
}
