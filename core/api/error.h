// Errors for the user and invariant checks for us.
//
// Bad input (YAML, dataset rows, checkpoints, images, judge replies) throws an mmr::Error subclass whose
// message names the file, the line or key, what was expected and what was found. Internal invariants use
// MMR_CHECK, which records file:line. Plugins never call exit(); the host catches at the plugin boundary.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mmr {

// Base of every error the runner reports to the user.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad experiment spec or plugin options; the message starts with "file:line:column: ".
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Bad data: a dataset row, an image, a checkpoint tensor, a benchmark file. Message names file and row/key.
class DataError : public Error {
 public:
  using Error::Error;
};

// A file could not be opened, read or written. Message names the path, the mode and the OS reason.
class IoError : public Error {
 public:
  using Error::Error;
};

// A plugin could not be found, loaded or created, or it threw. Message names the plugin and its file.
class PluginError : public Error {
 public:
  using Error::Error;
};

// A broken internal invariant (a bug, not bad input).
class InternalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
[[noreturn]] inline void check_failed(const char* file, int line, const char* cond, const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << cond;
  if (!msg.empty()) os << ": " << msg;
  throw InternalError(os.str());
}
}  // namespace detail

}  // namespace mmr

// MMR_CHECK(cond, message-expression-streamable)
#define MMR_CHECK(cond, ...)                                                         \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::ostringstream mmr_check_os_;                                              \
      mmr_check_os_ << "" __VA_ARGS__;                                               \
      ::mmr::detail::check_failed(__FILE__, __LINE__, #cond, mmr_check_os_.str());   \
    }                                                                                \
  } while (0)
