// A crash reporter: on SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT, print the signal and a raw backtrace
// (module + offset per frame, resolvable with addr2line) to stderr, then die of the same signal. Linked into the
// runner and every test executable as an object, so its static initializer always runs. Only async-signal-safe
// calls in the handler (backtrace() is primed at start-up so it does not allocate there).
#include <execinfo.h>
#include <initializer_list>
#include <signal.h>
#include <string.h>
#include <unistd.h>

namespace {

void handler(int sig) {
  const char* name = strsignal(sig);
  (void)!write(STDERR_FILENO, "\n*** fatal signal: ", 19);
  (void)!write(STDERR_FILENO, name, strlen(name));
  (void)!write(STDERR_FILENO, "; backtrace:\n", 13);
  void* frames[64];
  const int n = backtrace(frames, 64);
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  signal(sig, SIG_DFL);
  raise(sig);
}

struct Install {
  Install() {
    void* prime[1];
    backtrace(prime, 1);  // loads libgcc's unwinder now, not inside the handler
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) signal(sig, handler);
  }
} install;

}  // namespace
