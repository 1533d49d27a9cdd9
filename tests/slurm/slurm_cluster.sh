#!/usr/bin/env bash
# A real one-node Slurm cluster (munged + slurmctld + slurmd, Debian 12's Slurm 22.05) that lives entirely
# under one private folder, for the tests that submit work through sbatch. Nothing under /etc, /run or
# /var is read or written: config, munge key and socket, state, spool, logs and pid files are all in DIR,
# and the two Slurm ports are picked free on loopback, so several clusters (one per test run) coexist.
#
#   tests/slurm/slurm_cluster.sh start DIR   start the cluster, wait until the node is idle, then print
#                                            the client environment (eval "$(... start DIR)")
#   tests/slurm/slurm_cluster.sh stop DIR    cancel its jobs, stop the daemons, leave no process behind
#   tests/slurm/slurm_cluster.sh env DIR     print the client environment again
#
# Needs root (the daemons run as root: SlurmUser=root, SlurmdUser=root) and the Debian packages
# slurmctld slurmd slurm-client munge. Exits non-zero with a one-line "slurm: ..." message on stderr and
# the tail of the relevant log when something does not start. See README.md next to this script.
set -euo pipefail

readonly START_TIMEOUT_S=30   # munged socket, slurmctld answering, node idle: each waited for at most this
readonly STOP_TIMEOUT_S=15    # each daemon gets this long after SIGTERM before SIGKILL
DIED=0                        # set by wait_for when the daemon it waits for has died
NODE=""                       # the node's name: this machine's short hostname

die() {  # die MESSAGE [LOG]: one line on stderr, then the log's tail to help whoever reads the test output
  echo "slurm: $1" >&2
  if [[ -n "${2:-}" && -f "$2" ]]; then
    echo "---- last lines of $2 ----" >&2
    tail -n 20 "$2" >&2
  fi
  exit 1
}

usage() {
  echo "usage: $0 start|stop|env DIR" >&2
  exit 2
}

# A pid counts as alive only if it exists and is not a zombie: in a container whose pid 1 does not reap
# orphans, a daemon's dead first fork (and a killed daemon) stays a zombie forever, and kill -0 says "alive".
alive() {
  local pid=$1 stat state
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }   # after the command name, which may hold spaces and parentheses
  state=${stat%% *}
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

pid_of() {  # pid_of PIDFILE: the pid in it if that process is alive, else nothing
  local pid
  [[ -f "$1" ]] || return 0
  pid=$(tr -dc '0-9' <"$1")
  if alive "$pid"; then echo "$pid"; fi
}

# The processes of the cluster in DIR that outlived their daemon: munged, slurmctld and slurmd carry
# SLURM_CLUSTER_SH_DIR=DIR in their environment (set when this script starts them); a slurmstepd (one per
# running job step; its environment is overwritten by its process title) is known by the slurmd log it
# writes to. The jobs themselves carry neither: they are found as the slurmstepds' descendants.
cluster_pids() {
  local dir=$1 p fd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    if [[ "$p" == "$$" ]] || ! alive "$p"; then continue; fi
    # -z: environ is NUL-separated; -s: processes vanish (or are not ours to read) while we look
    if grep -qszxF -- "SLURM_CLUSTER_SH_DIR=$dir" "/proc/$p/environ"; then echo "$p"; continue; fi
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == slurmstepd ]] || continue
    for fd in /proc/"$p"/fd/*; do
      if [[ "$(readlink "$fd" 2>/dev/null)" == "$dir/slurmd.log" ]]; then echo "$p"; break; fi
    done
  done
}

# with_descendants PID...: the pids and all their descendants (read from /proc: ps may not be installed)
with_descendants() {
  local -A parent_of=()
  local stat p ppid rest
  for stat in /proc/[0-9]*/stat; do
    p=${stat#/proc/}; p=${p%/stat}
    { read -r rest <"$stat"; } 2>/dev/null || continue   # gone meanwhile
    rest=${rest##*) }            # after the command name, which may hold spaces and parentheses
    read -r _ ppid _ <<<"$rest"  # state, ppid
    parent_of[$p]=$ppid
  done
  local -A seen=()
  local changed=1
  for p in "$@"; do seen[$p]=1; done
  while ((changed)); do
    changed=0
    for p in "${!parent_of[@]}"; do
      if [[ -z "${seen[$p]:-}" && -n "${seen[${parent_of[$p]}]:-}" ]]; then seen[$p]=1; changed=1; fi
    done
  done
  printf '%s\n' "${!seen[@]}"
}

port_free() {  # nothing listens on 127.0.0.1:PORT (a connect is refused)
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A random free port below the kernel's ephemeral range (ip_local_port_range, usually 32768..60999): a port
# in that range may be the local end of some outgoing connection, which a connect test does not see but
# which makes the daemon's bind fail. Not one of the arguments (the ports already picked).
pick_port() {
  local low=32768 port tries
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
  ((low > 11000)) || low=32768
  for ((tries = 0; tries < 100; tries++)); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    [[ " $* " == *" $port "* ]] && continue
    if port_free "$port"; then echo "$port"; return 0; fi
  done
  die "no free port found on 127.0.0.1"
}

print_env() {
  # SLURM_CONF is all a client (sbatch, squeue, scancel, scontrol, sinfo) needs: the munge socket is in
  # slurm.conf too (AuthInfo=socket=...), and the clients' auth/munge reads it from there.
  echo "export SLURM_CONF=$1/slurm.conf"
}

# wait_for SECONDS PIDFILE COMMAND...: poll every 0.2 s until COMMAND succeeds. Fails after SECONDS, or
# as soon as the daemon of PIDFILE has written its pid and died (a fatal error after it daemonized, e.g.
# its port taken: the daemon's parent has already exited 0 by then).
wait_for() {
  local deadline=$((SECONDS + $1)) pidfile=$2 pid
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [[ -f "$pidfile" ]]; then
      pid=$(tr -dc '0-9' <"$pidfile")
      if [[ -n "$pid" ]] && ! alive "$pid"; then DIED=1; return 1; fi
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# failed NAME WHAT LOG: the message for die after wait_for failed: the daemon's last fatal (or error) line
# if it died, else WHAT (what did not happen in time)
failed() {
  local line
  if ((DIED)); then
    line=$(grep -E 'fatal' "$3" 2>/dev/null | tail -n 1 || true)
    [[ -n "$line" ]] || line=$(grep -E -i 'error' "$3" 2>/dev/null | tail -n 1 || true)
    echo "$1 exited: ${line:-no reason logged}; see $3"
  else
    echo "$2 within $START_TIMEOUT_S s; see $3"
  fi
}

# A client retries a controller that does not answer for about MessageTimeout (10 s); bound each poll so
# that a slurmctld that died at once (e.g. its port taken by another process) is noticed within seconds.
ctld_up() {
  ! port_free "$1" && timeout 2 scontrol ping
}

node_idle() {
  [[ "$(timeout 5 sinfo -h -n "$NODE" -o %T 2>/dev/null)" == idle ]]
}

start() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  for cmd in munged slurmctld slurmd sinfo scontrol; do
    command -v "$cmd" >/dev/null || die "$cmd not found; install: apt-get install slurmctld slurmd slurm-client munge"
  done
  [[ $(id -u) -eq 0 ]] || die "must run as root (the daemons run as SlurmUser=root)"
  # slurm.conf has no quoting for paths, and a unix socket path is at most 107 bytes (sun_path)
  [[ "$dir" != *[[:space:]\'\"\#=,]* ]] || die "DIR must not contain spaces, quotes, #, = or commas: $dir"
  # (slurmstepd's socket is the longest: DIR/spool/NODE_JOBID.STEPID)
  NODE=$(hostname -s)
  ((${#dir} + ${#NODE} + 30 <= 107)) \
    || die "DIR is too long for the unix sockets under it (at most $((77 - ${#NODE})) characters): $dir"
  for d in munged slurmctld slurmd; do
    [[ -z "$(pid_of "$dir/$d.pid")" ]] || die "a $d of $dir is already running (stop it first: $0 stop $dir)"
  done

  # munged insists that every directory above its socket is world-executable and that the key's folder is
  # not writable by others: a mktemp -d folder (0700) is refused with "Socket is inaccessible".
  chmod 0755 "$dir"
  # On any failure from here on, stop what did start (the logs stay for the reader)
  # (expanded now: when set -e ends the script from a nested call, start's locals may be gone)
  # shellcheck disable=SC2064
  trap "stop $(printf %q "$dir") >/dev/null 2>&1 || true" EXIT
  # Every start is a fresh cluster: no jobs recovered from an earlier run in DIR, job ids from 1, and
  # logs that hold only this run (a failure message quotes them)
  rm -rf "$dir/state" "$dir/spool" "$dir/tmp"
  rm -f "$dir"/*.pid "$dir"/*.log "$dir"/*.stderr "$dir/jobcomp.txt" "$dir/munge/munge.socket"*
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/tmp"
  chmod 0755 "$dir/munge"

  # --- munge: a fresh private key, its own socket -----------------------------------------------------
  if [[ ! -s "$dir/munge/munge.key" ]]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  fi
  chmod 0400 "$dir/munge/munge.key"
  # munged forks and its parent exits non-zero if the daemon cannot start (it reports the reason on stderr)
  if ! SLURM_CLUSTER_SH_DIR="$dir" munged \
      --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
      --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munged.seed" \
      </dev/null >"$dir/munged.stderr" 2>&1; then
    die "munged did not start: $(head -n 1 "$dir/munged.stderr"); see $dir/munged.log" "$dir/munged.log"
  fi
  wait_for "$START_TIMEOUT_S" "$dir/munged.pid" \
      bash -c "munge -n -S '$dir/munge/munge.socket' | unmunge -S '$dir/munge/munge.socket'" \
    || die "$(failed munged "munged does not answer on $dir/munge/munge.socket" "$dir/munged.log")" "$dir/munged.log"

  # --- slurm.conf --------------------------------------------------------------------------------------
  local ctld_port slurmd_port
  ctld_port=$(pick_port)
  slurmd_port=$(pick_port "$ctld_port")
  # ClusterName must be lowercase; a distinct one per DIR keeps the state files of different runs apart
  local cluster mem_mb
  cluster="t$(printf '%s' "$dir" | md5sum | cut -c1-10)"
  # 90% of what slurmd will find: a node reporting less memory than RealMemory is drained, one reporting
  # more is fine, and jobs asking for --mem up to this still fit (memory is not a consumable: CR_Core)
  mem_mb=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  cat >"$dir/slurm.conf" <<EOF
# Written by tests/slurm/slurm_cluster.sh: a private one-node cluster for tests. Everything under $dir.
ClusterName=$cluster
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root

# Auth through our own munged. socket= is read by every client command too (auth/munge and cred/munge).
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10

StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
TmpFS=$dir/tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Only this folder's SPANK plugins (none), not /etc/slurm/plugstack.conf
PlugStackConfig=$dir/plugstack.conf

# No cgroups (not usable in a container): processes are tracked through /proc, tasks are not confined
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd: sacct has nothing to read. Finished jobs stay visible to scontrol/squeue for MinJobAge
# seconds, and every finished job gets one line in jobcomp.txt (its final state, exit code, times).
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
MpiDefault=none
# Debian has no mail program by default; slurmctld logs an error without one
MailProg=/bin/true

SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# The backfill pass every second (default 30 s): a requeued job or one whose BeginTime passed starts
# only on a periodic pass, not on an event
SchedulerParameters=bf_interval=1
# Short timeouts: a test does not wait for minutes on a dead daemon or a killed job
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
KillWait=2
MessageTimeout=10
InactiveLimit=0
MinJobAge=600

NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$dir/plugstack.conf"

  # --- slurmctld, slurmd -------------------------------------------------------------------------------
  # Both daemonize and write their pid files themselves. Their output goes to files so that a caller
  # reading this script's stdout through a pipe ($(...)) is not kept waiting by a daemon holding it.
  export SLURM_CONF="$dir/slurm.conf"
  SLURM_CLUSTER_SH_DIR="$dir" slurmctld -f "$dir/slurm.conf" </dev/null >"$dir/slurmctld.stderr" 2>&1 \
    || die "slurmctld did not start: $(head -n 1 "$dir/slurmctld.stderr"); see $dir/slurmctld.log" "$dir/slurmctld.log"
  wait_for "$START_TIMEOUT_S" "$dir/slurmctld.pid" ctld_up "$ctld_port" \
    || die "$(failed slurmctld "slurmctld does not answer on port $ctld_port" "$dir/slurmctld.log")" "$dir/slurmctld.log"
  SLURM_CLUSTER_SH_DIR="$dir" slurmd -f "$dir/slurm.conf" </dev/null >"$dir/slurmd.stderr" 2>&1 \
    || die "slurmd did not start: $(head -n 1 "$dir/slurmd.stderr"); see $dir/slurmd.log" "$dir/slurmd.log"
  wait_for "$START_TIMEOUT_S" "$dir/slurmd.pid" node_idle \
    || die "$(failed slurmd "slurmd did not register (node $NODE: $(sinfo -h -n "$NODE" -o %T 2>&1))" "$dir/slurmd.log")" "$dir/slurmd.log"

  trap - EXIT
  print_env "$dir"
}

stop_daemon() {  # stop_daemon NAME PIDFILE: SIGTERM, bounded wait, SIGKILL
  local name=$1 pid deadline
  pid=$(pid_of "$2")
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT_S))
  while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if alive "$pid"; then
    echo "slurm: $name (pid $pid) ignored SIGTERM for $STOP_TIMEOUT_S s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

stop() {
  local dir=$1 jobs deadline left
  [[ -d "$dir" ]] || return 0
  dir=$(cd "$dir" && pwd -P)
  export SLURM_CONF="$dir/slurm.conf"

  # Jobs first: slurmd leaves running jobs (and their slurmstepd) alive when it stops, by design.
  # scancel lets slurmstepd kill each job's processes (KillWait), then the steps go away.
  if [[ -n "$(pid_of "$dir/slurmctld.pid")" && -n "$(pid_of "$dir/slurmd.pid")" ]]; then
    # (timeout: a client waits up to MessageTimeout on a slurmctld that hangs)
    jobs=$(timeout 5 squeue -h -o %A 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
      # shellcheck disable=SC2086  # one job id per word
      timeout 5 scancel $jobs 2>/dev/null || true
      deadline=$((SECONDS + STOP_TIMEOUT_S))
      while [[ -n "$(timeout 5 squeue -h -t RUNNING,COMPLETING,CONFIGURING,SUSPENDED -o %A 2>/dev/null)" ]] \
          && ((SECONDS < deadline)); do
        sleep 0.2
      done
    fi
  fi

  stop_daemon slurmd "$dir/slurmd.pid"
  stop_daemon slurmctld "$dir/slurmctld.pid"
  stop_daemon munged "$dir/munged.pid"

  # Whatever the daemons left behind (a slurmstepd whose job could not be cancelled, e.g. because
  # slurmctld had died), together with the job it runs
  left=$(cluster_pids "$dir")
  if [[ -n "$left" ]]; then
    # shellcheck disable=SC2086,SC2046  # one pid per word
    kill -KILL $(with_descendants $left) 2>/dev/null || true
    sleep 0.2
    left=$(cluster_pids "$dir")
    [[ -z "$left" ]] || die "processes of $dir survive SIGKILL: $left"
  fi
  rm -f "$dir"/*.pid
}

[[ $# -eq 2 ]] || usage
case "$1" in
  start) start "$2" ;;
  stop) stop "$2" ;;
  env) print_env "$(cd "$2" && pwd -P)" ;;
  *) usage ;;
esac
