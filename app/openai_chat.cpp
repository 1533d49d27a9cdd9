// The OpenAI chat-completions wire format. See openai_chat.h.
#include "app/openai_chat.h"
#include "core/lib/image/image.h"
#include "core/lib/util/base64.h"
#include "core/lib/util/json_safe.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <iterator>

namespace mmr::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uintmax_t kMaxLocalImageBytes = uintmax_t{64} << 20;  // a local image is read whole: as much as a body

const json& require(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) throw RequestError(fmt::format("{}: missing '{}'", where, key));
  return *it;
}

std::string type_name(const json& v) { return v.type_name(); }

// Refuses an image whose header claims more than limits.max_image_pixels, or that is no image we read.
void check_image_size(const std::string& bytes, const RequestLimits& limits, const std::string& where) {
  image::ImageSize size;
  try {
    size = image::image_size(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), where);
  } catch (const DataError& e) {
    throw RequestError(e.what());
  }
  if (size.width * size.height > limits.max_image_pixels)
    throw RequestError(fmt::format("{}: the image is {} x {} pixels, more than this server takes ({} pixels, "
                                   "--max-image-pixels)", where, size.width, size.height, limits.max_image_pixels));
}

// A data:image/<type>;base64,... URL decoded into image_dir/image_<index>.<ext>; returns the file.
std::string decode_data_url(const std::string& url, const fs::path& image_dir, int index, const RequestLimits& limits,
                            const std::string& where) {
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
    bytes = base64_decode(std::string_view(url).substr(comma + 1), Base64Rules::kStrict);
  } catch (const Base64Error& e) {
    throw RequestError(where + ": " + e.what());
  }
  if (bytes.empty()) throw RequestError(where + ": the data URL holds no bytes");
  check_image_size(bytes, limits, where);
  const fs::path file = image_dir / fmt::format("image_{}{}", index, ext);
  std::ofstream out(file, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw IoError("cannot write the decoded image to '" + file.string() + "'");
  return file.string();
}

// Whether `file` (canonical) lies in `dir` (canonical) or below it, comparing whole path components.
bool lies_under(const fs::path& file, const fs::path& dir) {
  auto f = file.begin();
  for (auto d = dir.begin(); d != dir.end(); ++d, ++f)
    if (f == file.end() || *f != *d) return false;
  return f != file.end();
}

// A local image (a path or a file:// URL) the operator allowed: a regular file whose real path (symbolic links
// followed) lies under an allowed folder. One message for a missing file and a file outside, so a client cannot
// probe what exists on the server.
std::string allowed_local_image(const std::string& path, const RequestLimits& limits, const std::string& where) {
  if (limits.allowed_media_dirs.empty())
    throw RequestError(where + ": local image paths are off on this server (its operator allows folders with "
                               "--allowed-media-dir); send the image as a data: URL");
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  bool allowed = !ec && fs::is_regular_file(real, ec);
  if (allowed) {
    allowed = false;
    for (const auto& dir : limits.allowed_media_dirs) allowed = allowed || lies_under(real, dir);
  }
  if (!allowed)
    throw RequestError(fmt::format("{}: '{}' is not an image file under the folders this server allows", where, path));
  // Read whole to check its size, as a data: URL is: no larger than a request body may be.
  const uintmax_t bytes = fs::file_size(real, ec);
  if (ec || bytes > kMaxLocalImageBytes)
    throw RequestError(fmt::format("{}: '{}' is larger than {} bytes", where, path, kMaxLocalImageBytes));
  std::ifstream in(real, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check_image_size(data, limits, where);
  return real.string();
}

// The file of one image part: a decoded data: URL, a file:// URL or a local path.
std::string image_file(const std::string& url, const fs::path& image_dir, int index, const RequestLimits& limits,
                       const std::string& where) {
  if (url.rfind("data:", 0) == 0) return decode_data_url(url, image_dir, index, limits, where);
  if (url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0)
    throw RequestError(where + ": remote image URLs are not fetched; send the image as a data: URL or a local path");
  std::string path = url;
  if (url.rfind("file://", 0) == 0) {
    path = url.substr(7);
    if (path.empty() || path[0] != '/')
      throw RequestError(fmt::format("{}: expected file:///absolute/path, found '{}'", where, url));
  }
  return allowed_local_image(path, limits, where);
}

// One message's text and image files, before its role decides where they go.
struct Message {
  std::string role;
  std::string text;
  std::vector<std::string> images;
};

// The content parts of a message: text parts joined by newlines, image parts as files (numbered by `n_images`
// across the request).
void read_content_parts(const json& content, const std::string& where, const fs::path& image_dir,
                        const RequestLimits& limits, int& n_images, Message& msg) {
  for (size_t k = 0; k < content.size(); ++k) {
    const std::string pw = fmt::format("{}.content[{}]", where, k);
    const json& part = content[k];
    if (!part.is_object()) throw RequestError(pw + ": expected an object {type, ...}");
    const json& type = require(part, "type", pw);
    if (type == "text") {
      const json& t = require(part, "text", pw);
      if (!t.is_string()) throw RequestError(pw + ".text: expected a string");
      msg.text += (msg.text.empty() ? "" : "\n") + t.get<std::string>();
    } else if (type == "image_url") {
      const json& iu = require(part, "image_url", pw);
      const json& url = iu.is_object() ? require(iu, "url", pw + ".image_url") : iu;
      if (!url.is_string()) throw RequestError(pw + ".image_url.url: expected a string");
      msg.images.push_back(image_file(url.get<std::string>(), image_dir, ++n_images, limits, pw + ".image_url.url"));
    } else {
      throw RequestError(fmt::format("{}.type: expected 'text' or 'image_url', found {}", pw, dump_text(type)));
    }
  }
}

// The image parts of all messages, counted before any is decoded (a request past --max-images costs nothing).
int64_t count_image_parts(const json& messages) {
  int64_t n = 0;
  for (const json& m : messages) {
    const auto content = m.is_object() ? m.find("content") : m.end();
    if (content == m.end() || !content->is_array()) continue;
    for (const json& part : *content) {
      const auto type = part.is_object() ? part.find("type") : part.end();
      n += type != part.end() && *type == "image_url";
    }
  }
  return n;
}

// messages[i]: {role, content}, content a string or an array of parts.
Message read_message(const json& m, const std::string& where, const fs::path& image_dir, const RequestLimits& limits,
                     int& n_images) {
  if (!m.is_object()) throw RequestError(where + ": expected an object {role, content}");
  const json& role = require(m, "role", where);
  if (!role.is_string()) throw RequestError(where + ".role: expected a string");
  Message msg;
  msg.role = role.get<std::string>();
  const json& content = require(m, "content", where);
  if (content.is_string()) {
    msg.text = content.get<std::string>();
  } else if (content.is_array()) {
    read_content_parts(content, where, image_dir, limits, n_images, msg);
  } else {
    throw RequestError(where + ".content: expected a string or an array of content parts, found " +
                       type_name(content));
  }
  return msg;
}

// Adds a message to the sample: system text is kept for the first user turn; user and assistant messages
// alternate as human and gpt turns, images as "<image>\n" in front of the text.
void add_message(Message msg, const std::string& where, std::string& system, ChatSample& sample) {
  if (msg.role == "system") {
    if (!sample.turns.empty()) throw RequestError(where + ": a system message must come before the others");
    if (!msg.images.empty()) throw RequestError(where + ": a system message cannot carry images");
    system += (system.empty() ? "" : "\n") + msg.text;
    return;
  }
  if (msg.role != "user" && msg.role != "assistant")
    throw RequestError(fmt::format("{}.role: expected 'system', 'user' or 'assistant', found '{}'", where, msg.role));
  const std::string from = msg.role == "user" ? "human" : "gpt";
  const std::string expected = sample.turns.empty() || sample.turns.back().role == "gpt" ? "human" : "gpt";
  if (from != expected)
    throw RequestError(fmt::format("{}: expected a{} message here (user and assistant must alternate, starting "
                                   "with user), found '{}'", where, expected == "human" ? " user" : "n assistant",
                                   msg.role));
  if (from == "gpt" && !msg.images.empty()) throw RequestError(where + ": an assistant message cannot carry images");
  std::string prefix;
  for (size_t k = 0; k < msg.images.size(); ++k) prefix += "<image>\n";
  if (from == "human" && sample.turns.empty() && !system.empty()) msg.text = system + "\n\n" + msg.text;
  sample.turns.push_back({from, prefix + msg.text});
  for (auto& im : msg.images) sample.images.push_back(std::move(im));
}

// "stop": a string or an array of up to 4 strings.
std::vector<std::string> read_stop(const json& stop) {
  std::vector<std::string> out;
  if (stop.is_string()) {
    out.push_back(stop.get<std::string>());
  } else if (stop.is_array() && stop.size() <= 4) {
    for (const auto& s : stop) {
      if (!s.is_string()) throw RequestError("'stop': expected a string or an array of up to 4 strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    throw RequestError("'stop': expected a string or an array of up to 4 strings, found " + dump_text(stop));
  }
  return out;
}

// The sampling fields of the body: max_tokens (or max_completion_tokens), temperature, top_p, seed, stop.
GenerationConfig read_generation_config(const json& body, const RequestLimits& limits) {
  GenerationConfig g;
  g.max_new_tokens = limits.default_max_tokens;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    auto it = body.find(key);
    if (it == body.end() || it->is_null()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > limits.max_tokens_limit)
      throw RequestError(fmt::format("'{}': expected an integer in [1, {}], found {}", key, limits.max_tokens_limit,
                                     dump_text(*it)));
    g.max_new_tokens = it->get<int64_t>();
  }
  if (auto it = body.find("temperature"); it != body.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() < 0 || it->get<double>() > 2)
      throw RequestError("'temperature': expected a number in [0, 2], found " + dump_text(*it));
    g.temperature = it->get<double>();
  }
  if (auto it = body.find("top_p"); it != body.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 1)
      throw RequestError("'top_p': expected a number in (0, 1], found " + dump_text(*it));
    g.top_p = it->get<double>();
  }
  if (auto it = body.find("seed"); it != body.end() && !it->is_null()) {
    if (!it->is_number_integer()) throw RequestError("'seed': expected an integer, found " + dump_text(*it));
    g.seed = static_cast<uint64_t>(it->get<int64_t>());
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) g.stop_strings = read_stop(*it);
  return g;
}

// "stream" (a boolean) and "stream_options" ({include_usage}, only with stream: true, as OpenAI has it).
void read_stream_fields(const json& body, ChatRequest& req) {
  if (auto it = body.find("stream"); it != body.end() && !it->is_null()) {
    if (!it->is_boolean()) throw RequestError("'stream': expected true or false, found " + dump_text(*it));
    req.stream = it->get<bool>();
  }
  auto it = body.find("stream_options");
  if (it == body.end() || it->is_null()) return;
  if (!req.stream) throw RequestError("'stream_options': only allowed when 'stream' is true");
  if (!it->is_object()) throw RequestError("'stream_options': expected an object {\"include_usage\": true|false}");
  if (auto u = it->find("include_usage"); u != it->end() && !u->is_null()) {
    if (!u->is_boolean())
      throw RequestError("'stream_options.include_usage': expected true or false, found " + dump_text(*u));
    req.include_usage = u->get<bool>();
  }
}

// The number of bytes at the end of `text` that begin a UTF-8 sequence it does not complete (0 when none).
size_t incomplete_utf8_tail(const std::string& text) {
  for (size_t k = 1; k <= 3 && k <= text.size(); ++k) {
    const auto c = static_cast<unsigned char>(text[text.size() - k]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back for the lead byte
    const size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return length > k ? k : 0;
  }
  return 0;
}

// Where a stop string occurs in `text` or may be starting at its end (text.size() when nowhere): the reply is
// cut there if the stop string completes, so nothing from there on is settled.
size_t earliest_stop_start(const std::string& text, const std::vector<std::string>& stops) {
  size_t at = text.size();
  for (const auto& s : stops) {
    if (s.empty()) continue;
    at = std::min(at, text.find(s));
    // Suffixes shorter than s that are a prefix of it, the longest first.
    for (size_t p = text.size() >= s.size() ? text.size() - s.size() + 1 : 0; p < at; ++p)
      if (text.compare(p, std::string::npos, s, 0, text.size() - p) == 0) {
        at = p;
        break;
      }
  }
  return at;
}

}  // namespace

ChatRequest parse_chat_request(const json& body, const fs::path& image_dir, const RequestLimits& limits) {
  if (!body.is_object()) throw RequestError("the request body must be a JSON object");
  ChatRequest req;
  if (auto it = body.find("model"); it != body.end()) {
    if (!it->is_string()) throw RequestError("'model': expected a string, found " + type_name(*it));
    req.model = it->get<std::string>();
  }
  read_stream_fields(body, req);
  if (auto it = body.find("n"); it != body.end() && !(it->is_number_integer() && it->get<int64_t>() == 1))
    throw RequestError("'n': only n=1 is supported");

  const json& messages = require(body, "messages", "request");
  if (!messages.is_array() || messages.empty())
    throw RequestError("'messages': expected a non-empty array of {role, content}");
  if (static_cast<int64_t>(messages.size()) > limits.max_messages)
    throw RequestError(fmt::format("'messages': {} messages, more than this server takes in one request ({})",
                                   messages.size(), limits.max_messages));
  if (const int64_t n = count_image_parts(messages); n > limits.max_images)
    throw RequestError(fmt::format("'messages': {} images, more than this server takes in one request ({})", n,
                                   limits.max_images));
  std::string system;
  int n_images = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = fmt::format("messages[{}]", i);
    add_message(read_message(messages[i], where, image_dir, limits, n_images), where, system, req.sample);
  }
  if (req.sample.turns.empty() || req.sample.turns.back().role != "human")
    throw RequestError("messages: the last message must be a user message");
  req.config = read_generation_config(body, limits);
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
                                    {"finish_reason", finish_reason(g)}}})},
      {"usage", {{"prompt_tokens", g.prompt_tokens},
                 {"completion_tokens", completion},
                 {"total_tokens", g.prompt_tokens + completion}}},
  };
}

json error_body(const std::string& message, const std::string& type) {
  return json{{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
}

std::string finish_reason(const Generation& g) { return g.finish_reason == "length" ? "length" : "stop"; }

json completion_chunk(const std::string& id, const std::string& model, int64_t created, const json& delta,
                      const json& finish, bool include_usage) {
  json chunk{{"id", id},
             {"object", "chat.completion.chunk"},
             {"created", created},
             {"model", model},
             {"choices", json::array({json{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json usage_chunk(const Generation& g, const std::string& id, const std::string& model, int64_t created) {
  json chunk = completion_chunk(id, model, created, json::object(), nullptr, false);
  chunk["choices"] = json::array();
  chunk["usage"] = chat_completion(g, id, model, created)["usage"];
  return chunk;
}

std::string sse_event(const json& data) {
  return "data: " + data.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

size_t settled_length(const std::string& text, const std::vector<std::string>& stop_strings) {
  size_t n = text.size() - incomplete_utf8_tail(text);
  static const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  while (n >= kReplacement.size() && text.compare(n - kReplacement.size(), kReplacement.size(), kReplacement) == 0)
    n -= kReplacement.size();
  return std::min(n, earliest_stop_start(text, stop_strings));
}

std::string DeltaStream::next(const std::string& text_so_far) {
  const size_t n = settled_length(text_so_far, stops_);
  if (n <= sent_.size()) return "";
  if (text_so_far.compare(0, sent_.size(), sent_) != 0) {
    consistent_ = false;
    return "";
  }
  std::string delta = text_so_far.substr(sent_.size(), n - sent_.size());
  sent_ += delta;
  return delta;
}

std::string DeltaStream::finish(const std::string& final_text) {
  if (final_text.compare(0, sent_.size(), sent_) != 0) consistent_ = false;
  std::string rest = final_text.size() > sent_.size() ? final_text.substr(sent_.size()) : "";
  sent_ += rest;
  return rest;
}

}  // namespace mmr::serve
