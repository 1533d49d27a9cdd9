// Runs the real `runner` binary as a child process for end-to-end tests: arguments, environment, captured
// stdout/stderr, exit status, and signals sent to a running child.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace mmr::test {

struct ProcessResult {
  int status = -1;  // exit code, or 128 + signal
  std::string out, err;
};

class Process {
 public:
  // Starts `argv[0]` with the arguments; `env` entries are added to (or replace) the current environment.
  Process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});
  ~Process();
  void signal(int sig);
  ProcessResult wait();
  std::string err_so_far() const;  // what the running child has written to stderr so far
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
  bool waited_ = false;
};

ProcessResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {});

// The path of an executable on $PATH (Chromium, gnuplot: tests that need one skip without it); "" when none.
std::string find_program(const std::string& name);

}  // namespace mmr::test
