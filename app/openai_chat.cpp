#include "app/openai_chat.h"

#include <fmt/format.h>

#include <fstream>

namespace mmr::serve {

namespace fs = std::filesystem;
using nlohmann::json;

std::string base64_decode(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0, pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '+') v = 62;
    else if (c == '/') v = 63;
    else if (c == '=') { ++pad; continue; }
    else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    else throw RequestError(fmt::format("base64: invalid character '{}' at offset {}", c, i));
    if (pad > 0) throw RequestError(fmt::format("base64: data after '=' padding at offset {}", i));
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits must be the zero padding of a 2- or 3-character final group (6 or 4 bits are impossible).
  if (bits >= 6) throw RequestError("base64: truncated input (a final group of one character)");
  if (pad > 2) throw RequestError("base64: more than two '=' padding characters");
  return out;
}

namespace {

const json& require(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) throw RequestError(fmt::format("{}: missing '{}'", where, key));
  return *it;
}

std::string type_name(const json& v) { return v.type_name(); }

// The file of one image part: a decoded data: URL, a file:// URL or a local path.
std::string image_file(const std::string& url, const fs::path& image_dir, int index, const std::string& where) {
  if (url.rfind("data:", 0) == 0) {
    const size_t comma = url.find(',');
    if (comma == std::string::npos) throw RequestError(where + ": a data: URL without ','");
    const std::string header = url.substr(5, comma - 5);  // image/png;base64
    if (header.size() < 7 || header.substr(header.size() - 7) != ";base64")
      throw RequestError(fmt::format("{}: expected a base64 data URL (data:image/png;base64,...), found 'data:{}'",
                                     where, header));
    const std::string mime = header.substr(0, header.size() - 7);
    static const std::pair<const char*, const char*> kTypes[] = {
        {"image/png", ".png"}, {"image/jpeg", ".jpg"}, {"image/jpg", ".jpg"},
        {"image/gif", ".gif"}, {"image/bmp", ".bmp"}, {"image/webp", ".webp"}};
    const char* ext = nullptr;
    for (const auto& [m, e] : kTypes)
      if (mime == m) ext = e;
    if (!ext)
      throw RequestError(fmt::format("{}: unsupported image type '{}' (expected image/png, image/jpeg, image/gif, "
                                     "image/bmp or image/webp)", where, mime));
    std::string bytes;
    try {
      bytes = base64_decode(std::string_view(url).substr(comma + 1));
    } catch (const RequestError& e) {
      throw RequestError(where + ": " + e.what());
    }
    if (bytes.empty()) throw RequestError(where + ": the data URL holds no bytes");
    const fs::path file = image_dir / fmt::format("image_{}{}", index, ext);
    std::ofstream out(file, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw IoError("cannot write the decoded image to '" + file.string() + "'");
    return file.string();
  }
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
    throw RequestError(where + ": remote image URLs are not fetched; send the image as a data: URL or a local path");
  std::string path = url;
  if (url.rfind("file://", 0) == 0) {
    path = url.substr(7);
    if (path.empty() || path[0] != '/')
      throw RequestError(fmt::format("{}: expected file:///absolute/path, found '{}'", where, url));
  }
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw RequestError(fmt::format("{}: no image file '{}'", where, path));
  return path;
}

}  // namespace

ChatRequest parse_chat_request(const json& body, const fs::path& image_dir, const RequestLimits& limits) {
  if (!body.is_object()) throw RequestError("the request body must be a JSON object");
  ChatRequest req;
  if (auto it = body.find("model"); it != body.end()) {
    if (!it->is_string()) throw RequestError("'model': expected a string, found " + type_name(*it));
    req.model = it->get<std::string>();
  }
  if (auto it = body.find("stream"); it != body.end() && it->is_boolean() && it->get<bool>())
    throw RequestError("'stream': streaming is not supported; send stream=false");
  if (auto it = body.find("n"); it != body.end() && !(it->is_number_integer() && it->get<int64_t>() == 1))
    throw RequestError("'n': only n=1 is supported");

  const json& messages = require(body, "messages", "request");
  if (!messages.is_array() || messages.empty())
    throw RequestError("'messages': expected a non-empty array of {role, content}");
  std::string system;
  int n_images = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = fmt::format("messages[{}]", i);
    const json& m = messages[i];
    if (!m.is_object()) throw RequestError(where + ": expected an object {role, content}");
    const json& role_j = require(m, "role", where);
    if (!role_j.is_string()) throw RequestError(where + ".role: expected a string");
    const std::string role = role_j.get<std::string>();
    const json& content = require(m, "content", where);
    std::string text;
    std::vector<std::string> images;
    if (content.is_string()) {
      text = content.get<std::string>();
    } else if (content.is_array()) {
      for (size_t k = 0; k < content.size(); ++k) {
        const std::string pw = fmt::format("{}.content[{}]", where, k);
        const json& part = content[k];
        if (!part.is_object()) throw RequestError(pw + ": expected an object {type, ...}");
        const json& type = require(part, "type", pw);
        if (type == "text") {
          const json& t = require(part, "text", pw);
          if (!t.is_string()) throw RequestError(pw + ".text: expected a string");
          text += (text.empty() ? "" : "\n") + t.get<std::string>();
        } else if (type == "image_url") {
          const json& iu = require(part, "image_url", pw);
          const json& url = iu.is_object() ? require(iu, "url", pw + ".image_url") : iu;
          if (!url.is_string()) throw RequestError(pw + ".image_url.url: expected a string");
          if (++n_images > limits.max_images)
            throw RequestError(fmt::format("{}: more than {} images in one request", pw, limits.max_images));
          images.push_back(image_file(url.get<std::string>(), image_dir, n_images, pw + ".image_url.url"));
        } else {
          throw RequestError(fmt::format("{}.type: expected 'text' or 'image_url', found {}", pw, type.dump()));
        }
      }
    } else {
      throw RequestError(where + ".content: expected a string or an array of content parts, found " +
                         type_name(content));
    }

    if (role == "system") {
      if (!req.sample.turns.empty()) throw RequestError(where + ": a system message must come before the others");
      if (!images.empty()) throw RequestError(where + ": a system message cannot carry images");
      system += (system.empty() ? "" : "\n") + text;
    } else if (role == "user" || role == "assistant") {
      const std::string from = role == "user" ? "human" : "gpt";
      const std::string expected = req.sample.turns.empty() || req.sample.turns.back().role == "gpt" ? "human" : "gpt";
      if (from != expected)
        throw RequestError(fmt::format("{}: expected a{} message here (user and assistant must alternate, starting "
                                       "with user), found '{}'", where, expected == "human" ? " user" : "n assistant",
                                       role));
      if (from == "gpt" && !images.empty()) throw RequestError(where + ": an assistant message cannot carry images");
      std::string prefix;
      for (size_t k = 0; k < images.size(); ++k) prefix += "<image>\n";
      if (from == "human" && req.sample.turns.empty() && !system.empty()) text = system + "\n\n" + text;
      req.sample.turns.push_back({from, prefix + text});
      for (auto& im : images) req.sample.images.push_back(std::move(im));
    } else {
      throw RequestError(fmt::format("{}.role: expected 'system', 'user' or 'assistant', found '{}'", where, role));
    }
  }
  if (req.sample.turns.empty() || req.sample.turns.back().role != "human")
    throw RequestError("messages: the last message must be a user message");

  GenerationConfig& g = req.config;
  g.max_new_tokens = limits.default_max_tokens;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > limits.max_tokens_limit)
      throw RequestError(fmt::format("'{}': expected an integer in [1, {}], found {}", key, limits.max_tokens_limit,
                                     it->dump()));
    g.max_new_tokens = it->get<int64_t>();
  }
  if (auto it = body.find("temperature"); it != body.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 2)
      throw RequestError("'temperature': expected a number in [0, 2], found " + it->dump());
    g.temperature = it->get<double>();
  }
  if (auto it = body.find("top_p"); it != body.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 1)
      throw RequestError("'top_p': expected a number in (0, 1], found " + it->dump());
    g.top_p = it->get<double>();
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) throw RequestError("'seed': expected an integer, found " + it->dump());
    g.seed = static_cast<uint64_t>(it->get<int64_t>());
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      g.stop_strings.push_back(it->get<std::string>());
    } else if (it->is_array() && it->size() <= 4) {
      for (const auto& s : *it) {
        if (!s.is_string()) throw RequestError("'stop': expected a string or an array of up to 4 strings");
        g.stop_strings.push_back(s.get<std::string>());
      }
    } else {
      throw RequestError("'stop': expected a string or an array of up to 4 strings, found " + it->dump());
    }
  }
  return req;
}

json chat_completion(const Generation& g, const std::string& id, const std::string& model, int64_t created) {
  const int64_t completion = static_cast<int64_t>(g.token_ids.size());
  return json{
      {"id", id},
      {"object", "chat.completion"},
      {"created", created},
      {"model", model},
      {"choices", json::array({json{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", g.text}}},
                                    {"finish_reason", g.finish_reason == "length" ? "length" : "stop"}}})},
      {"usage", {{"prompt_tokens", g.prompt_tokens},
                 {"completion_tokens", completion},
                 {"total_tokens", g.prompt_tokens + completion}}},
  };
}

json error_body(const std::string& message, const std::string& type) {
  return json{{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
}

}  // namespace mmr::serve
