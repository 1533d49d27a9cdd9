// A chat-completions endpoint on loopback (cpp-httplib) that the benchmark suites point the real openai_compatible
// judge at: it answers every request with a policy of the test and records each request body as it arrives, so a
// test sees the model name, temperature, token limit and prompt that a benchmark sent (and how often). The
// reliability suites also make it fail: inject() turns the next requests into a fault of a real judge's kind.
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
      Fault fault = Fault::None;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        bodies_.push_back(body);
        if (faults_left_ > 0) --faults_left_, fault = fault_;
      }
      const std::string reply = policy_(body);
      const nlohmann::json out = {{"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", reply}}},
                                                {"finish_reason", "stop"}}}}};
      answer(fault, out.dump(), res);
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
  // What a judge endpoint does wrong: never answers in time (the reply comes after `delay`, past the client's
  // timeout), HTTP 500, a 200 whose body is not JSON, a 200 whose JSON is cut off, or a correct reply after `delay`.
  enum class Fault { None, Timeout, ServerError, Garbage, TruncatedJson, Slow };
  // The next `count` requests get `fault` (each is still recorded as sent).
  void inject(Fault fault, int count, std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
    std::lock_guard<std::mutex> lock(mutex_);
    fault_ = fault, faults_left_ = count, delay_ = delay;
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    bodies_.clear();
  }
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
  void answer(Fault fault, const std::string& good, httplib::Response& res) {
    if (fault == Fault::Timeout || fault == Fault::Slow) std::this_thread::sleep_for(delay_);
    if (fault == Fault::ServerError) {
      res.status = 500;
      res.set_content("{\"error\": {\"message\": \"internal error\"}}", "application/json");
    } else if (fault == Fault::Garbage) {
      res.set_content("<html><body>502 Bad Gateway</body></html>", "text/html");
    } else if (fault == Fault::TruncatedJson) {
      res.set_content(good.substr(0, good.size() / 2), "application/json");
    } else {
      res.set_content(good, "application/json");
    }
  }

  Policy policy_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mutex_;
  std::vector<nlohmann::json> bodies_;
  Fault fault_ = Fault::None;
  int faults_left_ = 0;
  std::chrono::milliseconds delay_{0};
};

}  // namespace mmr::test
