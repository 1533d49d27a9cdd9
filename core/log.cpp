// Console logging with a progress bar kept on the last line. See log.h.
#include "core/log.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "core/lib/util/atomic_file.h"
#include "core/lib/util/secrets.h"
#include "core/store.h"

namespace mmr {

// Where the bars of the live ProgressFile write; a bar keeps its target even after the ProgressFile ends, so
// `closed` (under `mu`) is what stops a late write from recreating a removed file.
struct ProgressFileTarget {
  std::filesystem::path path;
  std::string stage;
  std::mutex mu;
  bool closed = false;
  bool warned = false;
};

namespace {

std::mutex g_progress_file_mu;
std::shared_ptr<ProgressFileTarget> g_progress_file;

std::shared_ptr<ProgressFileTarget> live_progress_file() {
  std::lock_guard<std::mutex> lock(g_progress_file_mu);
  return g_progress_file;
}

// One progress state as `runner status` reads it; eta_s is null while unknown.
std::string progress_json(const ProgressFileTarget& t, const std::string& label, int64_t done, int64_t total,
                          double rate) {
  nlohmann::json j = {{"stage", t.stage}, {"label", label},           {"done", done},
                      {"total", total},   {"rate", rate},             {"eta_s", nullptr},
                      {"updated_at", now_iso8601()}, {"pid", static_cast<int64_t>(getpid())}};
  if (total > 0 && rate > 0) j["eta_s"] = std::max<double>(0, static_cast<double>(total - done) / rate);
  return j.dump();
}

// Never throws: a progress file is a convenience, and a full disk must not fail the stage that is writing it.
void write_progress(ProgressFileTarget& t, const std::string& text) {
  std::lock_guard<std::mutex> lock(t.mu);
  if (t.closed) return;
  try {
    write_file_atomic(t.path, text);
  } catch (const std::exception& e) {
    if (!t.warned) spdlog::warn("progress file not written (runner status will not show this stage's step): {}", e.what());
    t.warned = true;
  }
}

// A log line with the secrets replaced, formatted by `formatter`; the message is copied only when it holds one.
void format_redacted(spdlog::formatter& formatter, const spdlog::details::log_msg& msg, spdlog::memory_buf_t& out) {
  if (!any_secret()) return formatter.format(msg, out);
  const std::string text = redact_secrets(std::string(msg.payload.data(), msg.payload.size()));
  spdlog::details::log_msg copy = msg;
  copy.payload = spdlog::string_view_t(text.data(), text.size());
  formatter.format(copy, out);
}

// A file sink whose lines go through format_redacted.
class RedactedFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit RedactedFileSink(const std::filesystem::path& file) { file_.open(file.string(), /*truncate=*/false); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    format_redacted(*formatter_, msg, formatted);
    file_.write(formatted);
  }
  void flush_() override { file_.flush(); }

 private:
  spdlog::details::file_helper file_;
};

// Writes log lines to stderr; when a progress bar is showing, clears it first and redraws it after.
class ConsoleSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void set_bar(const std::string& bar) {
    std::lock_guard<std::mutex> lock(mutex_);
    bar_ = bar;
    std::fprintf(stderr, "\r\033[K%s", bar_.c_str());
    std::fflush(stderr);
  }
  void clear_bar() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!bar_.empty()) std::fprintf(stderr, "\r\033[K");
    bar_.clear();
    std::fflush(stderr);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    format_redacted(*formatter_, msg, formatted);
    if (!bar_.empty()) std::fputs("\r\033[K", stderr);
    std::fwrite(formatted.data(), 1, formatted.size(), stderr);
    if (!bar_.empty()) std::fputs(bar_.c_str(), stderr);
    std::fflush(stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  std::string bar_;
};

std::shared_ptr<ConsoleSink>& console() {
  static auto sink = [] {
    auto s = std::make_shared<ConsoleSink>();
    // A worker of `runner --jobs` or a rank of a data-parallel stage (MMR_LOG_TAG="job 2/4 rank 1/2") tags its
    // lines: several processes share one terminal.
    const char* tag_env = std::getenv("MMR_LOG_TAG");
    const std::string tag = tag_env && *tag_env ? fmt::format("[{}] ", tag_env) : "";
    s->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ " + tag + "[%n] %v");
    return s;
  }();
  return sink;
}

}  // namespace

bool stderr_is_terminal() {
  static const bool tty = [] {
    const char* term = std::getenv("TERM");
    return isatty(STDERR_FILENO) && !(term && std::string(term) == "dumb");
  }();
  return tty;
}

spdlog::sink_ptr console_sink() { return console(); }

void setup_logging(const std::string& level) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off")
    throw ConfigError(fmt::format("--log-level '{}': expected trace, debug, info, warn, error or off", level));
  spdlog::set_level(lvl);
  auto def = std::make_shared<spdlog::logger>("runner", console());
  def->set_level(lvl);
  spdlog::set_default_logger(def);
}

std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::filesystem::path& file) {
  std::vector<spdlog::sink_ptr> sinks{console()};
  if (!file.empty()) {
    auto fsink = std::make_shared<RedactedFileSink>(file);
    fsink->set_pattern("%Y-%m-%d %H:%M:%S.%e %-5l [%n] %v");
    sinks.push_back(fsink);
  }
  auto log = std::make_shared<spdlog::logger>(name, sinks.begin(), sinks.end());
  log->set_level(spdlog::get_level());
  log->flush_on(spdlog::level::info);
  return log;
}

std::string Progress::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  const long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, static_cast<int>((t % 3600) / 60));
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, static_cast<int>(t % 60));
  return fmt::format("{}s", t);
}

ProgressFile::ProgressFile(std::filesystem::path path, std::string stage)
    : target_(std::make_shared<ProgressFileTarget>()) {
  target_->path = std::move(path);
  target_->stage = std::move(stage);
  write_progress(*target_, progress_json(*target_, "", 0, 0, 0));
  std::lock_guard<std::mutex> lock(g_progress_file_mu);
  previous_ = g_progress_file;
  g_progress_file = target_;
}

ProgressFile::~ProgressFile() {
  {
    std::lock_guard<std::mutex> lock(g_progress_file_mu);
    g_progress_file = previous_;
  }
  std::lock_guard<std::mutex> lock(target_->mu);
  target_->closed = true;
  std::error_code ignored;
  std::filesystem::remove(target_->path, ignored);
}

Progress::Progress(std::string label, int64_t total, std::shared_ptr<spdlog::logger> log)
    : label_(std::move(label)), total_(total), log_(std::move(log)), tty_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()), last_draw_(start_), file_(live_progress_file()) {
  draw(true);
}

Progress::~Progress() {
  if (!finished_) {
    if (tty_) console()->clear_bar();
  }
}

void Progress::advance(int64_t n) {
  done_ += n;
  draw(false);
}

void Progress::set_postfix(const std::string& text) { postfix_ = text; }

double Progress::rate() const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return elapsed > 0 ? done_ / elapsed : 0;
}

std::string Progress::status_text() const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = this->rate();
  std::string eta = "?";
  if (total_ > 0 && rate > 0) eta = format_duration((total_ - done_) / rate);
  std::string s = total_ > 0 ? fmt::format("{}/{} ({:.0f}%)", done_, total_, 100.0 * done_ / total_)
                             : fmt::format("{}", done_);
  s += rate >= 1 ? fmt::format(", {:.2f} it/s", rate) : (done_ > 0 ? fmt::format(", {:.1f} s/it", 1 / rate) : "");
  s += fmt::format(", elapsed {}", format_duration(elapsed));
  if (total_ > 0 && done_ < total_) s += ", ETA " + eta;
  if (!postfix_.empty()) s += ", " + postfix_;
  return s;
}

// At most once a second, so a fast loop does not spend its time renaming files.
void Progress::write_file(bool force) {
  if (!file_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_file_write_ < std::chrono::seconds(1)) return;
  last_file_write_ = now;
  write_progress(*file_, progress_json(*file_, label_, done_, total_, rate()));
}

void Progress::draw(bool force) {
  write_file(force);
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (!force && now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    const int fill = total_ > 0 ? static_cast<int>(kWidth * std::min<int64_t>(done_, total_) / total_) : 0;
    console()->set_bar(fmt::format("{} [{}{}] {}", label_, std::string(fill, '#'), std::string(kWidth - fill, '.'),
                                   status_text()));
    return;
  }
  const int decile = total_ > 0 ? static_cast<int>(10 * done_ / total_) : 0;
  const bool time_due = now - last_draw_ >= std::chrono::seconds(30);
  if (force || decile > last_decile_ || time_due) {
    if (!force || done_ > 0) log_->info("{}: {}", label_, status_text());
    last_decile_ = decile;
    last_draw_ = now;
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  write_file(true);
  if (tty_) console()->clear_bar();
  log_->info("{}: done, {}", label_, status_text());
}

}  // namespace mmr
