// A chat-completions endpoint on loopback (cpp-httplib) that the benchmark suites point the real openai_compatible
// judge at: it answers every request with a policy of the test and records each request body, so a test sees the
// model name, temperature, token limit and prompt that a benchmark sent.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mmr::test {

class ChatServer {
 public:
  using Policy = std::function<std::string(const nlohmann::json& body)>;  // the reply's text
  explicit ChatServer(Policy policy) : policy_(std::move(policy)) {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const nlohmann::json body = nlohmann::json::parse(req.body);
      const std::string reply = policy_(body);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        bodies_.push_back(body);
      }
      const nlohmann::json out = {{"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", reply}}},
                                                {"finish_reason", "stop"}}}}};
      res.set_content(out.dump(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~ChatServer() {
    server_.stop();
    thread_.join();
  }
  ChatServer(const ChatServer&) = delete;
  ChatServer& operator=(const ChatServer&) = delete;

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  std::vector<nlohmann::json> bodies() {
    std::lock_guard<std::mutex> lock(mutex_);
    return bodies_;
  }
  // The last message (the user prompt) of every request, in the order they arrived.
  std::vector<std::string> prompts() {
    std::vector<std::string> out;
    for (const auto& body : bodies()) out.push_back(last_message(body));
    return out;
  }
  static std::string last_message(const nlohmann::json& body) {
    return body.at("messages").back().at("content").get<std::string>();
  }

 private:
  Policy policy_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::vector<nlohmann::json> bodies_;
};

}  // namespace mmr::test
