// Named kill points for the reliability tests (tests/reliability): the places where a crash must cost at most the
// step in flight. When the environment variable MMR_KILL_AT names a point ("ckpt.after_weights", or
// "ckpt.after_weights@3": the third time this process reaches it), the process says so on stderr and SIGKILLs
// itself there, so a test chooses where the runner dies without racing it with sleeps. Unset, a point costs one
// comparison with an empty string (the variable is read once per library). Header-only: the host and every plugin
// library reach the same points; each library counts its own passes (each point lives in one library).
// MMR_STOP_AT (same form) stops the process there with SIGSTOP instead: the fault tests fill or remount the disk
// while it waits at a known place, then continue it with SIGCONT.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

namespace mmr {
namespace detail {

struct KillTarget {
  std::string name;  // empty: no point is armed
  long nth = 1;
  int signal = SIGKILL;
};

inline const KillTarget& kill_target() {
  static const KillTarget target = [] {
    KillTarget t;
    const char* env = std::getenv("MMR_KILL_AT");
    if (!env && (env = std::getenv("MMR_STOP_AT"))) t.signal = SIGSTOP;
    if (!env) return t;
    const std::string_view spec(env);
    const size_t at = spec.find('@');
    t.name = std::string(spec.substr(0, at));
    if (at != std::string_view::npos) t.nth = std::atol(std::string(spec.substr(at + 1)).c_str());
    return t;
  }();
  return target;
}

}  // namespace detail

// Dies here by SIGKILL when MMR_KILL_AT names `name` (and this is its N-th pass), stops here when MMR_STOP_AT
// does; otherwise does nothing. A point shared by many callers (an atomic write) adds what it works on: it is then
// named "<name>:<detail>" ("write_file_atomic.before_rename:state.json"), so a test picks one file's write.
inline void kill_point(std::string_view name, std::string_view detail = {}) {
  const detail::KillTarget& target = detail::kill_target();
  if (target.name.empty()) return;
  const std::string_view armed = target.name;
  if (detail.empty() ? armed != name
                     : armed.size() != name.size() + 1 + detail.size() || armed.substr(0, name.size()) != name ||
                           armed[name.size()] != ':' || armed.substr(name.size() + 1) != detail)
    return;
  static std::atomic<long> passes{0};  // only the armed point counts, so one counter per library is enough
  if (++passes != target.nth) return;
  const std::string line = "kill point '" + target.name + "' reached: " +
                           (target.signal == SIGKILL ? "SIGKILL\n" : "SIGSTOP\n");
  (void)!::write(2, line.data(), line.size());  // one write: nothing buffered is lost to the kill
  ::raise(target.signal);
}

}  // namespace mmr
