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
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/lib/util/base64.h"
#include "core/api/plugin_api.h"

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

class OpenAiCompatible : public Judge {
 public:
  explicit OpenAiCompatible(const Options& o)
      : base_url_(o.get<std::string>("base_url")),
        endpoint_(parse_base_url(base_url_, o.where(o.node()["base_url"]))),
        model_(o.get<std::string>("model")),
        temperature_(o.get<double>("temperature")),
        max_tokens_(o.get<int64_t>("max_tokens")),
        timeout_s_(o.get<double>("timeout_s")),
        max_retries_(o.get<int>("max_retries")),
        backoff_s_(o.get<double>("backoff_s")),
        concurrency_(o.get<int>("concurrency")) {
    const std::string env = o.get<std::string>("api_key_env");
    if (!env.empty()) {
      const char* key = std::getenv(env.c_str());
      if (!key || !*key)
        throw ConfigError(fmt::format("{}option 'api_key_env': the environment variable '{}' is not set (it should "
                                      "hold the API key)", o.where(o.node()["api_key_env"]), env));
      api_key_ = key;
    }
    if (concurrency_ < 1) throw ConfigError(o.where(o.node()["concurrency"]) + "option 'concurrency': expected >= 1");
    if (max_retries_ < 0) throw ConfigError(o.where(o.node()["max_retries"]) + "option 'max_retries': expected >= 0");
    if (timeout_s_ <= 0) throw ConfigError(o.where(o.node()["timeout_s"]) + "option 'timeout_s': expected > 0");
  }

  static const char* summary() {
    return "judge over any OpenAI-compatible chat-completions endpoint (HTTP/HTTPS), with retries and bounded concurrency";
  }
  static OptionSchema option_schema() {
    return {
        {"base_url", "string", "", "endpoint root, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1", true},
        {"model", "string", "", "the model name sent in each request (e.g. gpt-4-0613)", true},
        {"temperature", "float", "0.0", "sampling temperature unless a benchmark overrides it per request"},
        {"max_tokens", "int", "1024", "max tokens of a reply unless a benchmark overrides it per request"},
        {"api_key_env", "string", "\"\"", "NAME of the environment variable holding the API key (sent as a bearer "
                                          "token; never logged or stored); empty: no key"},
        {"timeout_s", "float", "120", "connect/read/write timeout of one HTTP request, seconds"},
        {"max_retries", "int", "5", "retries on 429, 5xx and connection errors (exponential backoff)"},
        {"backoff_s", "float", "1.0", "first backoff; doubles on each retry (at most 60 s)"},
        {"concurrency", "int", "4", "requests in flight at once (one connection per worker thread)"},
    };
  }

  std::string identity() const override {
    return fmt::format("openai_compatible base_url={} model={} temperature={} max_tokens={}", base_url_, model_,
                       temperature_, max_tokens_);
  }

  void attach(StageContext& ctx) override { log_ = &ctx.log(); }

  std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) override {
    std::vector<JudgeReply> replies(requests.size());
    std::atomic<size_t> next{0};
    auto worker = [&] {
      httplib::Client client(endpoint_.scheme_host_port);
      const auto t = std::chrono::duration<double>(timeout_s_);
      client.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
      client.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
      client.set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(t));
      if (!api_key_.empty()) client.set_bearer_token_auth(api_key_.c_str());
      for (size_t i = next++; i < requests.size(); i = next++) {
        try {
          replies[i] = send(client, requests[i]);
        } catch (const std::exception& e) {  // nothing may escape a worker thread
          replies[i] = JudgeReply{false, "", std::string("request failed: ") + e.what()};
        }
      }
    };
    const size_t n_threads = std::min<size_t>(static_cast<size_t>(concurrency_), requests.size());
    std::vector<std::thread> threads;
    for (size_t t = 0; t + 1 < n_threads; ++t) threads.emplace_back(worker);
    if (n_threads > 0) worker();
    for (auto& t : threads) t.join();
    return replies;
  }

 private:
  JudgeReply send(httplib::Client& client, const JudgeRequest& r) const {
    nlohmann::json body;
    body["model"] = model_;
    body["messages"] = nlohmann::json::array();
    if (!r.system.empty()) body["messages"].push_back({{"role", "system"}, {"content", r.system}});
    if (r.images.empty()) {
      body["messages"].push_back({{"role", "user"}, {"content", r.user}});
    } else {
      // Images as data: URLs before the text, the content-parts form vision models take.
      nlohmann::json parts = nlohmann::json::array();
      for (const auto& path : r.images) {
        const std::string mime = image_mime_type(path);
        std::ifstream in(path, std::ios::binary);
        std::stringstream bytes;
        bytes << in.rdbuf();
        if (!in || mime.empty())
          return JudgeReply{false, "", fmt::format("image '{}': {}", path, mime.empty() ? "not a PNG/JPEG/GIF/BMP/WebP "
                                                                                          "file name" : "cannot read it")};
        parts.push_back({{"type", "image_url"},
                         {"image_url", {{"url", "data:" + mime + ";base64," + base64_encode(bytes.str())}}}});
      }
      parts.push_back({{"type", "text"}, {"text", r.user}});
      body["messages"].push_back({{"role", "user"}, {"content", parts}});
    }
    body["temperature"] = r.temperature >= 0 ? r.temperature : temperature_;
    body["max_tokens"] = r.max_tokens >= 0 ? r.max_tokens : max_tokens_;
    // Model-written text may hold broken UTF-8; send U+FFFD for it rather than fail the request.
    const std::string text = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::string path = endpoint_.path_prefix + "/chat/completions";
    std::string last_error;
    for (int attempt = 0;; ++attempt) {
      double wait_s = std::min(60.0, backoff_s_ * std::pow(2.0, attempt));
      auto res = client.Post(path, text, "application/json");
      if (!res) {
        last_error = fmt::format("POST {}{}: {}", base_url_, "/chat/completions", httplib::to_string(res.error()));
      } else if (res->status == 200) {
        try {
          const auto reply = nlohmann::json::parse(res->body);
          const auto& content = reply.at("choices").at(0).at("message").at("content");
          return JudgeReply{true, content.get<std::string>(), ""};
        } catch (const std::exception& e) {
          return JudgeReply{false, "", fmt::format("POST {}/chat/completions: the reply is not a chat completion "
                                                   "({}): {}", base_url_, e.what(), res->body.substr(0, 300))};
        }
      } else {
        last_error = fmt::format("POST {}/chat/completions: HTTP {}: {}", base_url_, res->status,
                                 res->body.substr(0, 300));
        if (res->status != 429 && res->status < 500) return JudgeReply{false, "", last_error};
        if (res->has_header("Retry-After")) {
          char* end = nullptr;
          const std::string v = res->get_header_value("Retry-After");
          const double s = std::strtod(v.c_str(), &end);
          if (end != v.c_str() && *end == '\0' && s >= 0) wait_s = std::min(60.0, s);
        }
      }
      if (attempt >= max_retries_)
        return JudgeReply{false, "", fmt::format("{} (gave up after {} retries)", last_error, max_retries_)};
      if (log_) log_->warn("judge: {}; retry {}/{} in {:.2f} s", last_error, attempt + 1, max_retries_, wait_s);
      std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
    }
  }

  std::string base_url_;
  Endpoint endpoint_;
  std::string model_;
  double temperature_;
  int64_t max_tokens_;
  double timeout_s_;
  int max_retries_;
  double backoff_s_;
  int concurrency_;
  std::string api_key_;
  spdlog::logger* log_ = nullptr;
};

}  // namespace
}  // namespace mmr::judges

MMR_PLUGIN(Judge, "openai_compatible", "1.0.0", mmr::judges::OpenAiCompatible)
