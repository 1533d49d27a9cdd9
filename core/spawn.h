// Starting another process of this runner (`runner --jobs` workers, the ranks of a data-parallel stage).
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

namespace mmr {

// Starts `program` (searched on PATH, as posix_spawnp does) with `argv` (argv[0] included), the current
// environment plus `env`, the file `actions` when given, and no signals blocked: the runner blocks SIGINT/SIGTERM
// in its own threads, and posix_spawn would pass that mask on. Returns posix_spawnp's error number (0: started).
int spawn_process(pid_t& pid, const std::string& program, std::vector<std::string> argv,
                  const std::vector<std::pair<std::string, std::string>>& env = {},
                  const posix_spawn_file_actions_t* actions = nullptr);

// Starts /proc/self/exe with `args` and the current environment plus `env` (replacing same-named entries), with no
// signals blocked (the runner blocks SIGINT/SIGTERM in its own threads, and posix_spawn would pass that on).
// Throws Error when the process cannot be started.
pid_t spawn_self(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env);

// The log tag of a child: this process's MMR_LOG_TAG (if any) then `tag`, e.g. "job 2/4 rank 1/2".
std::string child_log_tag(const std::string& tag);

// This host's name (gethostname), "unknown" when it cannot be read: what trials, leases and rendezvous record.
std::string host_name();

// A TCP port on the loopback interface that was free a moment ago (for a rendezvous on one host).
int free_loopback_port();

}  // namespace mmr
