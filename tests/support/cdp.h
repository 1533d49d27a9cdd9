// Headless Chromium driven over the Chrome DevTools Protocol, for tests that use a page the way a person does
// (click, type, upload a file, read what is shown). The protocol runs over two pipes (--remote-debugging-pipe:
// Chromium reads NUL-terminated JSON commands on its fd 3 and writes replies and events on its fd 4), so no
// websocket library is needed. Every wait has a deadline: a browser that hangs or dies fails the test instead
// of stalling it.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace mmr::test {

class CdpError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Chromium {
 public:
  // Starts `program` (the chromium binary) headless with a fresh profile in `profile_dir` and a window of
  // width x height; its own output goes to profile_dir/chromium.log.
  Chromium(const std::string& program, const std::filesystem::path& profile_dir, int width, int height);
  ~Chromium();  // Browser.close, then SIGKILL to its process group if it has not exited within 5 s
  Chromium(const Chromium&) = delete;
  Chromium& operator=(const Chromium&) = delete;

  // Opens `url` in a new tab and attaches to it (later page commands go there); returns once the document has
  // loaded.
  void open(const std::string& url, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // A protocol command to the page (or to the browser, before open()); its result. Throws CdpError with the
  // protocol's error, or when no reply came within `timeout`.
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nlohmann::json::object(),
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The value of a JavaScript expression in the page (promises awaited); throws CdpError on an exception.
  nlohmann::json evaluate(const std::string& expression);
  // Evaluates `expression` until it is truthy; returns that value, or throws CdpError naming it at the deadline.
  nlohmann::json wait_until(const std::string& expression, std::chrono::milliseconds timeout);

  // What a person does: a left click at the centre of the element `selector` names (scrolled into view),
  // typing text into the focused element, selecting all of it (Ctrl+A), choosing a file in a file input.
  void click(const std::string& selector);
  void type(const std::string& text);
  void select_all();
  void choose_file(const std::string& selector, const std::filesystem::path& file);
  // A PNG of the visible page, in base64 as the protocol sends it.
  std::string screenshot_base64();

  // Chromium's own output so far (for failure messages).
  std::string log() const;

 private:
  void send(const nlohmann::json& message);
  nlohmann::json next_message(std::chrono::steady_clock::time_point deadline);

  pid_t pid_ = -1;
  int to_browser_ = -1;    // our end of its fd 3
  int from_browser_ = -1;  // our end of its fd 4
  std::filesystem::path log_path_;
  std::string buffer_;     // bytes read but not yet split into messages
  int next_id_ = 1;
  std::string session_;    // the attached page's session ("": the browser)
};

}  // namespace mmr::test
