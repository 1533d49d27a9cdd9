// The routes of `runner serve` over its HTTP layer (serve_http.h): authentication from the headers, GET /,
// /health, /v1/models, POST /v1/chat/completions, the request log. See serve.h for the endpoints.
#pragma once

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>

#include "app/serve.h"
#include "app/serve_http.h"
#include "app/serve_scheduler.h"

namespace mmr::serve {

// A folder removed when the request is done.
struct TempDir {
  explicit TempDir(std::filesystem::path p);
  ~TempDir();
  std::filesystem::path path;
};

// What the routes share: the model's thread, the per-request image folders, the counters, the request log and
// the threads answering chat completions.
class Routes {
 public:
  Routes(const ServeOptions& o, const std::string& api_key, ChatModel& model, std::shared_ptr<spdlog::logger> log);
  ~Routes();  // waits for the request threads
  Routes(const Routes&) = delete;
  Routes& operator=(const Routes&) = delete;

  // The HTTP layer's decisions, bound to this object.
  http::Handlers handlers();
  // Fails every request not finished (503, the server is stopping); waits up to `grace` for their threads.
  void stop(std::chrono::milliseconds grace);
  int64_t chat_requests() const { return request_counter_; }

 private:
  std::optional<http::Response> check_head(const http::Request& head) const;
  void handle(const http::Request& request, const std::shared_ptr<http::Reply>& reply);
  void log_reply(const http::Request& request, int status);
  void chat_completions(const std::string& body, http::Reply& reply);
  // Runs `f` on a thread of its own (a chat completion waits for the model there), counted until it returns.
  void run_detached(std::function<void()> f);

  const ServeOptions& o_;
  const std::string api_key_sha256_;  // empty: no authentication
  std::shared_ptr<spdlog::logger> log_;
  Scheduler scheduler_;
  TempDir temp_;  // request-<n>/ holds the images of request n until the model has read them
  std::atomic<int64_t> request_counter_{0};
  std::atomic<int> failures_left_;
  std::mutex log_mu_;
  std::ofstream request_log_;
  std::mutex threads_mu_;
  std::condition_variable threads_cv_;
  int threads_ = 0;
};

}  // namespace mmr::serve
