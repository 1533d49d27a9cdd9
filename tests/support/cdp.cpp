#include "cdp.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace mmr::test {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

Chromium::Chromium(const std::string& program, const fs::path& profile_dir, int width, int height) {
  fs::create_directories(profile_dir);
  log_path_ = profile_dir / "chromium.log";
  // Writing to a browser that died must be an error (EPIPE), not the end of the test process.
  signal(SIGPIPE, SIG_IGN);
  int to[2], from[2];
  if (pipe2(to, O_CLOEXEC) != 0 || pipe2(from, O_CLOEXEC) != 0)
    throw CdpError(std::string("pipe2: ") + std::strerror(errno));
  const std::vector<std::string> args = {
      program, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
      "--no-first-run", "--disable-extensions", "--remote-debugging-pipe",
      "--user-data-dir=" + (profile_dir / "profile").string(),
      "--window-size=" + std::to_string(width) + "," + std::to_string(height), "about:blank"};
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = fork();
  if (pid_ < 0) throw CdpError(std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    // Its own process group, so the renderer and helper processes can be killed with it.
    setpgid(0, 0);
    // Moved above 4 first, in case a pipe end is 3 or 4 already; dup2 clears close-on-exec on 3 and 4.
    const int in = fcntl(to[0], F_DUPFD_CLOEXEC, 10), out = fcntl(from[1], F_DUPFD_CLOEXEC, 10);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (in < 0 || out < 0 || dup2(in, 3) < 0 || dup2(out, 4) < 0 || dup2(null_fd, 0) < 0) _exit(126);
    if (log_fd >= 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  close(to[0]);
  close(from[1]);
  to_browser_ = to[1];
  from_browser_ = from[0];
}

Chromium::~Chromium() {
  try {
    session_.clear();
    call("Browser.close", json::object(), std::chrono::seconds(3));
  } catch (const std::exception&) {
  }
  close_fd(to_browser_);
  close_fd(from_browser_);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(-pid_, SIGKILL);  // helpers left behind, if any
}

void Chromium::send(const json& message) {
  const std::string text = message.dump() + '\0';
  for (size_t done = 0; done < text.size();) {
    const ssize_t n = write(to_browser_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw CdpError(std::string("writing to chromium: ") + std::strerror(errno) + "\n" + log());
    done += static_cast<size_t>(n);
  }
}

json Chromium::next_message(Clock::time_point deadline) {
  for (;;) {
    const size_t end = buffer_.find('\0');
    if (end != std::string::npos) {
      const std::string text = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      return json::parse(text);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) throw CdpError("chromium did not answer in time\n" + log());
    pollfd p{from_browser_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char chunk[65536];
    const ssize_t n = read(from_browser_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw CdpError("chromium closed its end of the pipe (it exited)\n" + log());
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

json Chromium::call(const std::string& method, const json& params, std::chrono::milliseconds timeout) {
  const int id = next_id_++;
  json message{{"id", id}, {"method", method}, {"params", params}};
  if (!session_.empty()) message["sessionId"] = session_;
  send(message);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const json m = next_message(deadline);  // events (no "id") are not used: skipped
    if (!m.contains("id") || m["id"] != id) continue;
    if (m.contains("error")) throw CdpError(method + ": " + m["error"].dump());
    return m.value("result", json::object());
  }
}

void Chromium::open(const std::string& url, std::chrono::milliseconds timeout) {
  const std::string target = call("Target.createTarget", {{"url", url}})["targetId"];
  session_ = call("Target.attachToTarget", {{"targetId", target}, {"flatten", true}})["sessionId"];
  wait_until("document.readyState === 'complete' && location.href === " + json(url).dump(), timeout);
}

json Chromium::evaluate(const std::string& expression) {
  const json r = call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}});
  if (r.contains("exceptionDetails")) throw CdpError("javascript: " + expression + ": " + r["exceptionDetails"].dump());
  return r["result"].value("value", json());
}

json Chromium::wait_until(const std::string& expression, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const json v = evaluate(expression);
    const bool truthy = !(v.is_null() || v == false || v == 0 || v == "");
    if (truthy) return v;
    if (Clock::now() > deadline) throw CdpError("timed out waiting for: " + expression + " (last: " + v.dump() + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

void Chromium::click(const std::string& selector) {
  const json at = evaluate("(() => { const e = document.querySelector(" + json(selector).dump() +
                           "); if (!e) return null; e.scrollIntoView({block: 'center'});"
                           " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()");
  if (!at.is_array()) throw CdpError("click: no element matches " + selector);
  for (const char* type : {"mousePressed", "mouseReleased"})
    call("Input.dispatchMouseEvent", {{"type", type}, {"x", at[0]}, {"y", at[1]}, {"button", "left"}, {"clickCount", 1}});
}

void Chromium::type(const std::string& text) { call("Input.insertText", {{"text", text}}); }

void Chromium::select_all() {
  // Headless Chromium has no platform shortcuts: the key event names its editing command.
  call("Input.dispatchKeyEvent", {{"type", "keyDown"}, {"key", "a"}, {"code", "KeyA"}, {"modifiers", 2},
                                  {"windowsVirtualKeyCode", 65}, {"commands", json::array({"selectAll"})}});
  call("Input.dispatchKeyEvent", {{"type", "keyUp"}, {"key", "a"}, {"code", "KeyA"}, {"modifiers", 2}});
}

void Chromium::choose_file(const std::string& selector, const fs::path& file) {
  const json r = call("Runtime.evaluate", {{"expression", "document.querySelector(" + json(selector).dump() + ")"}});
  if (!r["result"].contains("objectId")) throw CdpError("choose_file: no element matches " + selector);
  call("DOM.setFileInputFiles", {{"files", json::array({file.string()})}, {"objectId", r["result"]["objectId"]}});
}

std::string Chromium::screenshot_base64() {
  return call("Page.captureScreenshot", {{"format", "png"}}, std::chrono::seconds(20))["data"];
}

std::string Chromium::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
}

}  // namespace mmr::test
