// Logging and progress: spdlog loggers per component, a console sink that keeps a progress bar on the last
// terminal line, per-trial log files, and the ProgressSink the host hands to plugins.
//
// On a terminal a progress bar redraws in place (rate, ETA, postfix); when stderr is a file or a pipe the same
// progress becomes a plain log line every 10% or 30 seconds, so CI logs and Slurm output stay readable.
//
// While a ProgressFile lives, every Progress made in the process also rewrites a small JSON file, so that
// `runner status` can show a running stage's step from another terminal (the store only learns a stage's
// metrics when it ends).
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "core/api/plugin_api.h"
#include "core/lib/util/secrets.h"  // register_secret, redact_secrets (logs show references)

namespace mmr {

// Sets up the console sink and the default level ("trace", "debug", "info", "warn", "error", "off").
// Throws ConfigError for an unknown level name.
void setup_logging(const std::string& level);

// A logger named `name` that writes to the console (and to `file` when given, appending).
std::shared_ptr<spdlog::logger> make_logger(const std::string& name, const std::filesystem::path& file = {});

// The console sink shared by every logger (for tests and for loggers made by plugins).
spdlog::sink_ptr console_sink();

bool stderr_is_terminal();


struct ProgressFileTarget;

// For as long as it lives, Progress objects created in this process also write their state to `path` as JSON
// {"stage", "label", "done", "total", "rate", "eta_s", "updated_at", "pid"}, atomically, at most once a second
// (and at the start and end of each bar). Process-wide rather than per thread: a plugin may make its bar on a
// worker thread, and a runner runs one stage at a time. Constructing it writes the stage with no bar yet;
// destroying it removes the file, so a file left behind means the process died during the stage. Failing to
// write is logged once and never fails the stage.
class ProgressFile {
 public:
  ProgressFile(std::filesystem::path path, std::string stage);
  ~ProgressFile();
  ProgressFile(const ProgressFile&) = delete;
  ProgressFile& operator=(const ProgressFile&) = delete;

 private:
  std::shared_ptr<ProgressFileTarget> target_;
  std::shared_ptr<ProgressFileTarget> previous_;
};

class Progress : public ProgressSink {
 public:
  Progress(std::string label, int64_t total, std::shared_ptr<spdlog::logger> log);
  ~Progress() override;
  void advance(int64_t n = 1) override;
  void set_postfix(const std::string& text) override;
  void finish() override;

  // "1h02m", "3m05s", "12s"
  static std::string format_duration(double seconds);

 private:
  void draw(bool force);
  void write_file(bool force);
  std::string status_text() const;
  double rate() const;
  std::string label_;
  int64_t total_, done_ = 0;
  std::string postfix_;
  std::shared_ptr<spdlog::logger> log_;
  bool tty_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_decile_ = 0;
  std::shared_ptr<ProgressFileTarget> file_;  // the ProgressFile live when this bar was made, if any
  std::chrono::steady_clock::time_point last_file_write_;
};

}  // namespace mmr
