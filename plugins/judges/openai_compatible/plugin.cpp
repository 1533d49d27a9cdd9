// The `openai_compatible` judge: sends each request as a chat completion (POST <base_url>/chat/completions) to any
// OpenAI-compatible endpoint — OpenAI, vLLM, a local `runner serve` — and returns the first choice's text.
//
// Retries with exponential backoff (backoff_s · 2^k, at most 60 s, or the server's Retry-After when it gives
// seconds) on 429, 5xx and connection errors; any other status fails the request at once with the status and
// the start of the body. `concurrency` worker threads each hold their own connection. The API key is read from
// the environment variable NAMED by `api_key_env`; it is sent as a bearer token and never logged or stored
// (identity() names the endpoint, model, temperature and max tokens only).
//
// Deliberately not here: caching (core/lib/judging/judging.h does it in the results store) and reply parsing (each
// benchmark parses with its official rules).
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/base64.h"
#include "core/lib/util/json_safe.h"

namespace mmr::judges {
namespace {

// "https://api.openai.com/v1" -> {"https://api.openai.com", "/v1"}.
struct Endpoint {
  std::string scheme_host_port;
  std::string path_prefix;
};
Endpoint parse_base_url(const std::string& url, const std::string& where) {
  const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
  if (!http && !https)
    throw ConfigError(fmt::format("{}option 'base_url': expected http://host[:port][/path] or https://..., found '{}'",
                                  where, url));
  const size_t host_start = url.find("://") + 3;
  const size_t slash = url.find('/', host_start);
  Endpoint e{url.substr(0, slash), slash == std::string::npos ? "" : url.substr(slash)};
  if (e.scheme_host_port.size() == host_start)
    throw ConfigError(fmt::format("{}option 'base_url': no host in '{}'", where, url));
  while (!e.path_prefix.empty() && e.path_prefix.back() == '/') e.path_prefix.pop_back();
  return e;
}

// "data:<mime>;base64,..." for an image file; an error text (and "") when it cannot be sent.
std::string image_data_url(const std::string& path, std::string& error) {
  const std::string mime = image_mime_type(path);
  if (mime.empty()) {
    error = fmt::format("image '{}': not a PNG/JPEG/GIF/BMP/WebP file name", path);
    return "";
  }
  try {
    return "data:" + mime + ";base64," + base64_encode(read_file(path));
  } catch (const IoError&) {
    error = fmt::format("image '{}': cannot read it", path);
    return "";
  }
}

// Seconds from a Retry-After header that gives seconds (at most 60), else `wait_s`.
double retry_after(const httplib::Response& res, double wait_s) {
  if (!res.has_header("Retry-After")) return wait_s;
  char* end = nullptr;
  const std::string v = res.get_header_value("Retry-After");
  const double s = std::strtod(v.c_str(), &end);
  return end != v.c_str() && *end == '\0' && s >= 0 ? std::min(60.0, s) : wait_s;
}

class OpenAiCompatible : public Judge {
 public:
  struct Config {
    std::string base_url, model;
    double temperature = 0;
    int64_t max_tokens = 0;
    std::string api_key_env;
    double timeout_s = 0;
    int max_retries = 0;
    double backoff_s = 0;
    int concurrency = 0;

    void bind(OptionBinder& o) {
      o.required("base_url", &base_url, "endpoint root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1");
      o.required("model", &model, "the model name sent in each request (e.g. gpt-4-0613)");
      o.bind("temperature", &temperature, 0.0, "sampling temperature unless a benchmark overrides it per request");
      o.bind("max_tokens", &max_tokens, 1024, "max tokens of a reply unless a benchmark overrides it per request");
      o.bind("api_key_env", &api_key_env, "", "NAME of the environment variable holding the API key (sent as a "
                                              "bearer token; never logged or stored); empty: no key");
      o.bind("timeout_s", &timeout_s, 120.0, "connect/read/write timeout of one HTTP request, seconds");
      o.bind("max_retries", &max_retries, 5, "retries on 429, 5xx and connection errors (exponential backoff)");
      o.bind("backoff_s", &backoff_s, 1.0, "first backoff; doubles on each retry (at most 60 s)");
      o.bind("concurrency", &concurrency, 4, "requests in flight at once (one connection per worker thread)");
      o.check(concurrency >= 1, "concurrency", "expected >= 1");
      o.check(max_retries >= 0, "max_retries", "expected >= 0");
      o.check(timeout_s > 0, "timeout_s", "expected > 0");
    }
  };

  explicit OpenAiCompatible(const Options& o)
      : cfg_(read_options<Config>(o)), endpoint_(parse_base_url(cfg_.base_url, o.where("base_url"))) {
    if (cfg_.api_key_env.empty()) return;
    const char* key = std::getenv(cfg_.api_key_env.c_str());
    if (!key || !*key)
      throw ConfigError(fmt::format("{}option 'api_key_env': the environment variable '{}' is not set (it should "
                                    "hold the API key)", o.where("api_key_env"), cfg_.api_key_env));
    api_key_ = key;
  }

  static const char* summary() {
    return "judge over any OpenAI-compatible chat-completions endpoint (HTTP/HTTPS), with retries and bounded concurrency";
  }

  std::string identity() const override {
    return fmt::format("openai_compatible base_url={} model={} temperature={} max_tokens={}", cfg_.base_url,
                       cfg_.model, cfg_.temperature, cfg_.max_tokens);
  }

  void attach(StageContext& ctx) override { log_ = &ctx.log(); }

  std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) override {
    std::vector<JudgeReply> replies(requests.size());
    std::atomic<size_t> next{0};
    auto worker = [&] {
      httplib::Client client = connect();
      for (size_t i = next++; i < requests.size(); i = next++) {
        try {
          replies[i] = send(client, requests[i]);
        } catch (const std::exception& e) {  // nothing may escape a worker thread
          replies[i] = JudgeReply{false, "", std::string("request failed: ") + e.what()};
        }
      }
    };
    const size_t n_threads = std::min<size_t>(static_cast<size_t>(cfg_.concurrency), requests.size());
    std::vector<std::thread> threads;
    for (size_t t = 0; t + 1 < n_threads; ++t) threads.emplace_back(worker);
    if (n_threads > 0) worker();
    for (auto& t : threads) t.join();
    return replies;
  }

 private:
  httplib::Client connect() const {
    httplib::Client client(endpoint_.scheme_host_port);
    const auto t = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(cfg_.timeout_s));
    client.set_connection_timeout(t);
    client.set_read_timeout(t);
    client.set_write_timeout(t);
    if (!api_key_.empty()) client.set_bearer_token_auth(api_key_.c_str());
    return client;
  }

  // The chat-completion request body; `error` says why there is none (an image that cannot be sent).
  std::string body_of(const JudgeRequest& r, std::string& error) const {
    nlohmann::json body;
    body["model"] = cfg_.model;
    body["messages"] = nlohmann::json::array();
    if (!r.system.empty()) body["messages"].push_back({{"role", "system"}, {"content", r.system}});
    if (r.images.empty()) {
      body["messages"].push_back({{"role", "user"}, {"content", r.user}});
    } else {
      // Images as data: URLs before the text, the content-parts form vision models take.
      nlohmann::json parts = nlohmann::json::array();
      for (const auto& path : r.images) {
        const std::string url = image_data_url(path, error);
        if (url.empty()) return "";
        parts.push_back({{"type", "image_url"}, {"image_url", {{"url", url}}}});
      }
      parts.push_back({{"type", "text"}, {"text", r.user}});
      body["messages"].push_back({{"role", "user"}, {"content", parts}});
    }
    body["temperature"] = r.temperature >= 0 ? r.temperature : cfg_.temperature;
    body["max_tokens"] = r.max_tokens >= 0 ? r.max_tokens : cfg_.max_tokens;
    // Model-written text may hold broken UTF-8; send U+FFFD for it rather than fail the request.
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  // The first choice's text of a 200 reply.
  JudgeReply read_reply(const httplib::Response& res) const {
    try {
      const auto reply = parse_json_limited(res.body);
      const auto& content = reply.at("choices").at(0).at("message").at("content");
      return JudgeReply{true, content.get<std::string>(), ""};
    } catch (const std::exception& e) {
      return JudgeReply{false, "", fmt::format("POST {}/chat/completions: the reply is not a chat completion "
                                               "({}): {}", cfg_.base_url, e.what(), res.body.substr(0, 300))};
    }
  }

  // POSTs the request, retrying with backoff on connection errors, 429 and 5xx.
  JudgeReply send(httplib::Client& client, const JudgeRequest& r) const {
    std::string error;
    const std::string text = body_of(r, error);
    if (!error.empty()) return JudgeReply{false, "", error};
    const std::string path = endpoint_.path_prefix + "/chat/completions";
    for (int attempt = 0;; ++attempt) {
      double wait_s = std::min(60.0, cfg_.backoff_s * std::pow(2.0, attempt));
      auto res = client.Post(path, text, "application/json");
      if (!res) {
        const bool read = res.error() == httplib::Error::Read;  // what a read timeout is, to cpp-httplib
        error = fmt::format("POST {}{}: {}{}", cfg_.base_url, "/chat/completions", httplib::to_string(res.error()),
                            read ? fmt::format(" (no reply within timeout_s = {} s, or the connection was closed)",
                                               cfg_.timeout_s) : "");
      } else if (res->status == 200) {
        return read_reply(*res);
      } else {
        error = fmt::format("POST {}/chat/completions: HTTP {}: {}", cfg_.base_url, res->status,
                            res->body.substr(0, 300));
        if (res->status != 429 && res->status < 500) return JudgeReply{false, "", error};
        wait_s = retry_after(*res, wait_s);
      }
      if (attempt >= cfg_.max_retries)
        return JudgeReply{false, "", fmt::format("{} (gave up after {} retries)", error, cfg_.max_retries)};
      if (log_) log_->warn("judge: {}; retry {}/{} in {:.2f} s", error, attempt + 1, cfg_.max_retries, wait_s);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
    }
  }

  const Config cfg_;
  const Endpoint endpoint_;
  std::string api_key_;
  spdlog::logger* log_ = nullptr;
};

}  // namespace
}  // namespace mmr::judges

MMR_PLUGIN(Judge, "openai_compatible", "1.0.0", mmr::judges::OpenAiCompatible)
