// Console logging with a progress bar kept on the last line. See log.h.
#include "core/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace mmr {
namespace {

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
    formatter_->format(msg, formatted);
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
    s->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v");
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
    auto fsink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string(), /*truncate=*/false);
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

Progress::Progress(std::string label, int64_t total, std::shared_ptr<spdlog::logger> log)
    : label_(std::move(label)), total_(total), log_(std::move(log)), tty_(stderr_is_terminal()),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {
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

std::string Progress::status_text() const {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done_ / elapsed : 0;
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

void Progress::draw(bool force) {
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
  if (tty_) console()->clear_bar();
  log_->info("{}: done, {}", label_, status_text());
}

}  // namespace mmr
