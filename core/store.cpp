// SQLite results store. See store.h and results/README.md.
#include "core/store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <signal.h>
#include <sqlite3.h>
#include <strings.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

#include "core/api/error.h"
#include "core/lib/util/kill_point.h"
#include "core/lib/util/sha256.h"
#include "core/spec.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// Migration N takes a file from version N-1 to N. Never edit a released step; append a new one.
const char* const kMigrations[] = {
    // 1: experiments, trials, stages, metrics, artifacts.
    R"sql(
CREATE TABLE experiments (
  id          INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  source      TEXT,
  spec        TEXT,
  created_at  TEXT NOT NULL,
  updated_at  TEXT NOT NULL
);
CREATE TABLE trials (
  id            INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
  identity      TEXT NOT NULL,
  ordinal       INTEGER NOT NULL,
  label         TEXT NOT NULL,
  seed          INTEGER NOT NULL,
  status        TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'finished', 'failed', 'interrupted')),
  attempt       INTEGER NOT NULL DEFAULT 0,
  started_at    TEXT,
  ended_at      TEXT,
  host          TEXT,
  pid           INTEGER,
  git_commit    TEXT,
  config        TEXT NOT NULL,
  artifact_dir  TEXT,
  error         TEXT,
  UNIQUE (experiment_id, identity)
);
CREATE TABLE stages (
  trial_id    INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  name        TEXT NOT NULL,
  ordinal     INTEGER NOT NULL,
  plugin      TEXT NOT NULL,
  status      TEXT NOT NULL CHECK (status IN ('finished', 'failed', 'interrupted')),
  started_at  TEXT,
  ended_at    TEXT,
  error       TEXT,
  PRIMARY KEY (trial_id, attempt, name)
);
CREATE TABLE metrics (
  trial_id    INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  stage       TEXT NOT NULL,
  name        TEXT NOT NULL,
  step        INTEGER,
  value       REAL,
  recorded_at TEXT NOT NULL
);
CREATE INDEX metrics_by_trial ON metrics (trial_id, attempt, stage, name, step);
CREATE TABLE artifacts (
  trial_id  INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
  attempt   INTEGER NOT NULL,
  stage     TEXT NOT NULL,
  name      TEXT NOT NULL,
  path      TEXT NOT NULL,
  sha256    TEXT NOT NULL,
  bytes     INTEGER NOT NULL,
  PRIMARY KEY (trial_id, attempt, stage, name)
);
-- The value each metric ended with in each trial's latest attempt: the final (step NULL) value when one was
-- logged, else the value at the highest step.
CREATE VIEW final_metrics AS
SELECT t.experiment_id, m.trial_id, m.stage, m.name, m.step, m.value
FROM metrics m JOIN trials t ON t.id = m.trial_id AND m.attempt = t.attempt
WHERE m.rowid = (SELECT m2.rowid FROM metrics m2
                 WHERE m2.trial_id = m.trial_id AND m2.attempt = m.attempt
                   AND m2.stage = m.stage AND m2.name = m.name
                 ORDER BY m2.step IS NOT NULL, m2.step DESC, m2.rowid DESC LIMIT 1);
)sql",
    // 2: the judge cache: a rerun or resume never asks a judge the same prompt twice.
    R"sql(
CREATE TABLE judgments (
  judge          TEXT NOT NULL,
  prompt_sha256  TEXT NOT NULL,
  prompt         TEXT NOT NULL,
  reply          TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  PRIMARY KEY (judge, prompt_sha256)
);
)sql",
    // 3: stage reuse across trials: what determines a stage's output, and where a reused stage's came from.
    R"sql(
ALTER TABLE stages ADD COLUMN stage_key TEXT;
ALTER TABLE stages ADD COLUMN reused_from TEXT;
CREATE INDEX stages_by_key ON stages (stage_key, status);
)sql",
    // 4: several runner processes on one store (--jobs): a stage being run holds a lease on its key, so a process
    // about to run an identical stage waits for it and reuses its result instead of running it twice.
    R"sql(
CREATE TABLE stage_leases (
  stage_key  TEXT PRIMARY KEY,
  host       TEXT NOT NULL,
  pid        INTEGER NOT NULL,
  since      TEXT NOT NULL
);
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kSchemaVersion);

// Column `i` of the current row, typed, with the text SQLite prints for it (numbers too: 3.0, 0.125, 1.0e-05).
QueryCell read_cell(sqlite3_stmt* st, int i) {
  QueryCell cell;
  switch (sqlite3_column_type(st, i)) {
    case SQLITE_NULL: cell.type = QueryCell::Null; break;
    case SQLITE_INTEGER: cell.type = QueryCell::Integer; break;
    case SQLITE_FLOAT: cell.type = QueryCell::Real; break;
    case SQLITE_BLOB: cell.type = QueryCell::Blob; break;
    default: cell.type = QueryCell::Text;
  }
  if (cell.type == QueryCell::Blob) {
    cell.text = fmt::format("<blob {} bytes>", sqlite3_column_bytes(st, i));
  } else if (const auto* p = sqlite3_column_text(st, i)) {
    cell.text.assign(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st, i));
  }
  return cell;
}

// A prepared statement with positional binding. Errors name the database file and the SQL.
class Stmt {
 public:
  Stmt(sqlite3* db, const fs::path& file, const std::string& sql) : db_(db), file_(file), sql_(sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st_, nullptr) != SQLITE_OK)
      throw DataError(fmt::format("{}: SQL error: {} (in: {})", file.string(), sqlite3_errmsg(db), sql));
  }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt& bind(int i, int64_t v) { return check(sqlite3_bind_int64(st_, i, v)); }
  Stmt& bind(int i, int v) { return check(sqlite3_bind_int64(st_, i, v)); }
  Stmt& bind(int i, double v) { return check(sqlite3_bind_double(st_, i, v)); }
  Stmt& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, const std::optional<std::string>& v) { return v ? bind(i, *v) : bind_null(i); }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(st_, i)); }
  // Returns true while there is a row.
  bool step() {
    const int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw DataError(fmt::format("{}: SQL error: {} (in: {})", file_.string(), sqlite3_errmsg(db_), sql_));
  }
  int64_t int_col(int i) const { return sqlite3_column_int64(st_, i); }
  std::string text_col(int i) const {
    const auto* p = sqlite3_column_text(st_, i);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st_, i)) : std::string();
  }
  QueryCell cell_col(int i) const { return read_cell(st_, i); }
  sqlite3_stmt* raw() const { return st_; }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) throw InternalError(fmt::format("sqlite bind failed: {}", sqlite3_errstr(rc)));
    return *this;
  }
  sqlite3* db_;
  const fs::path& file_;
  std::string sql_;
  sqlite3_stmt* st_ = nullptr;
};

// BEGIN IMMEDIATE ... COMMIT, rolled back when an exception leaves the scope.
class Transaction {
 public:
  explicit Transaction(Store& s) : s_(s) { s_.exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) {
      try {
        s_.exec("ROLLBACK");
      } catch (...) {
      }
    }
  }
  void commit() {
    s_.exec("COMMIT");
    done_ = true;
  }

 private:
  Store& s_;
  bool done_ = false;
};


TrialRow read_trial(Stmt& st) {
  TrialRow r;
  r.id = st.int_col(0);
  r.experiment_id = st.int_col(1);
  r.identity = st.text_col(2);
  r.label = st.text_col(3);
  r.status = st.text_col(4);
  r.attempt = static_cast<int>(st.int_col(5));
  r.host = st.text_col(6);
  r.pid = st.int_col(7);
  r.artifact_dir = st.text_col(8);
  r.error = st.text_col(9);
  r.started_at = st.text_col(10);
  return r;
}
constexpr const char* kTrialColumns =
    "id, experiment_id, identity, label, status, attempt, host, pid, artifact_dir, error, coalesce(started_at, '')";

// Opens the database file (creating it and its folder in ReadWrite mode); throws IoError saying why not.
sqlite3* open_database(const fs::path& path, Store::Mode mode) {
  if (mode == Store::Mode::ReadOnly && !fs::exists(path))
    throw IoError(fmt::format("results database '{}' does not exist (run an experiment first, or pass --results)",
                              path.string()));
  if (mode == Store::Mode::ReadWrite && path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(path.parent_path(), ec);
    if (ec) throw IoError(fmt::format("cannot create folder '{}' for the results database: {}",
                                      path.parent_path().string(), ec.message()));
  }
  sqlite3* db = nullptr;
  const int flags =
      mode == Store::Mode::ReadOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    const std::string why = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw IoError(fmt::format("cannot open results database '{}' ({}): {}", path.string(),
                              mode == Store::Mode::ReadOnly ? "read-only" : "read-write", why));
  }
  sqlite3_busy_timeout(db, 30000);
  return db;
}

// The statements of one stage's commit (Store::commit_stage), each inside the caller's transaction.
void insert_stage(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt, const StageRecord& stage) {
  Stmt st(db, file,
          "INSERT OR REPLACE INTO stages (trial_id, attempt, name, ordinal, plugin, status, started_at, ended_at, "
          "error, stage_key, reused_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.bind(1, trial_id).bind(2, attempt).bind(3, stage.name).bind(4, stage.ordinal).bind(5, stage.plugin)
      .bind(6, stage.status).bind(7, stage.started_at).bind(8, stage.ended_at);
  auto text_or_null = [&](int i, const std::string& v) {
    if (v.empty()) st.bind_null(i); else st.bind(i, v);
  };
  text_or_null(9, stage.error);
  text_or_null(10, stage.key);
  text_or_null(11, stage.reused_from);
  st.step();
}

void insert_metrics(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt, const StageRecord& stage,
                    const std::string& now) {
  Stmt st(db, file,
          "INSERT INTO metrics (trial_id, attempt, stage, name, step, value, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
  for (const auto& m : stage.metrics) {
    sqlite3_reset(st.raw());
    st.bind(1, trial_id).bind(2, attempt).bind(3, stage.name).bind(4, m.name);
    if (m.step < 0) st.bind_null(5); else st.bind(5, m.step);
    st.bind(6, m.value).bind(7, now);
    st.step();
  }
}

void insert_artifacts(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt, const StageRecord& stage) {
  Stmt st(db, file,
          "INSERT OR REPLACE INTO artifacts (trial_id, attempt, stage, name, path, sha256, bytes) "
          "VALUES (?, ?, ?, ?, ?, ?, ?)");
  for (const auto& a : stage.artifacts) {
    sqlite3_reset(st.raw());
    st.bind(1, trial_id).bind(2, attempt).bind(3, stage.name).bind(4, a.name).bind(5, a.path).bind(6, a.sha256)
        .bind(7, a.bytes);
    st.step();
  }
}

// A trial attempt's end: its status, end time and error (NULL when empty).
void update_trial_end(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt, const std::string& status,
                      const std::string& error, const std::string& now) {
  Stmt st(db, file, "UPDATE trials SET status = ?, ended_at = ?, error = ? WHERE id = ? AND attempt = ?");
  st.bind(1, status).bind(2, now);
  if (error.empty()) st.bind_null(3); else st.bind(3, error);
  st.bind(4, trial_id).bind(5, attempt).step();
}

// The metrics and artifacts of stage `name` in one attempt, in the order they were recorded / by name.
std::vector<MetricRow> stage_metrics(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt,
                                     const std::string& name) {
  std::vector<MetricRow> out;
  Stmt st(db, file, "SELECT name, step, value FROM metrics WHERE trial_id = ? AND attempt = ? AND stage = ? ORDER BY rowid");
  st.bind(1, trial_id).bind(2, attempt).bind(3, name);
  while (st.step()) {
    const bool final_value = sqlite3_column_type(st.raw(), 1) == SQLITE_NULL;
    out.push_back({st.text_col(0), final_value ? -1 : st.int_col(1), sqlite3_column_double(st.raw(), 2)});
  }
  return out;
}

std::vector<ArtifactRow> stage_artifacts(sqlite3* db, const fs::path& file, int64_t trial_id, int attempt,
                                         const std::string& name) {
  std::vector<ArtifactRow> out;
  Stmt st(db, file,
          "SELECT name, path, sha256, bytes FROM artifacts WHERE trial_id = ? AND attempt = ? AND stage = ? "
          "ORDER BY name");
  st.bind(1, trial_id).bind(2, attempt).bind(3, name);
  while (st.step()) out.push_back({st.text_col(0), st.text_col(1), st.text_col(2), st.int_col(3)});
  return out;
}

}  // namespace

std::string now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(ms));
}

std::optional<double> parse_iso8601(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<double>(timegm(&tm)) + ms / 1000.0;
}

namespace {
// When process `pid` started, in seconds since the epoch (Linux: /proc/<pid>/stat's starttime after the boot
// time of /proc/stat), or nullopt when that cannot be read.
std::optional<double> process_start_time(int64_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  const size_t close = line.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {  // field 22: starttime, in clock ticks after boot
    if (i < 22) continue;
    std::ifstream boot("/proc/stat");
    for (std::string key; boot >> key;) {
      if (key != "btime") continue;
      double btime = 0;
      if (!(boot >> btime)) return std::nullopt;
      return btime + std::stod(field) / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  return std::nullopt;
}
}  // namespace

bool process_alive(int64_t pid, const std::string& since) {
  if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  const auto taken = parse_iso8601(since);
  const auto started = taken ? process_start_time(pid) : std::nullopt;
  return !started || *started <= *taken + 2.0;  // boot time has 1 s resolution
}

Store::Store(const fs::path& path, Mode mode, int target_version)
    : path_(path), mode_(mode), db_(open_database(path, mode)) {
  try {
    exec("PRAGMA foreign_keys = ON");
    if (mode == Mode::ReadWrite) {
      refuse_foreign();  // before the journal mode, which is written into the file
      use_wal();
      exec("PRAGMA synchronous = NORMAL");
      migrate(target_version);
    } else {
      exec("PRAGMA query_only = ON");
      const int v = schema_version();
      if (v == 0)
        throw DataError(fmt::format("results database '{}' holds no results yet (no run has made its tables; one may "
                                    "be starting)", path.string()));
      if (v > kSchemaVersion)
        throw DataError(fmt::format("results database '{}' has schema version {}, newer than this runner's {}; "
                                    "use a newer runner", path.string(), v, kSchemaVersion));
    }
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  if (db_) sqlite3_close(db_);
}

void Store::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string why = err ? err : "unknown error";
    sqlite3_free(err);
    throw DataError(fmt::format("{}: SQL error: {} (in: {})", path_.string(), why,
                                sql.size() > 200 ? sql.substr(0, 200) + "..." : sql));
  }
}

// Switching a new file to WAL takes an exclusive lock, and when two runners make the switch at once SQLite answers
// SQLITE_BUSY at once instead of calling the busy handler (it would deadlock otherwise). The switch is retried for
// as long as the busy timeout: the other runner's switch ends within milliseconds.
void Store::use_wal() {
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int wait_ms = 1;; wait_ms = std::min(wait_ms * 2, 100)) {
    if (sqlite3_exec(db_, "PRAGMA journal_mode = WAL", nullptr, nullptr, nullptr) == SQLITE_OK) return;
    if ((sqlite3_errcode(db_) & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() > give_up)
      exec("PRAGMA journal_mode = WAL");  // the error, as exec reports it
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
  }
}

// A file with tables but no schema_migrations is another program's database: --results named the wrong file, and
// migrating would add this runner's tables to it.
void Store::refuse_foreign() const {
  // One statement, so one snapshot: another runner may be creating the schema meanwhile (found by
  // Store.ProcessesOpeningOneNewFileAtOnceAllSucceed, when this read the version and the tables separately).
  Stmt st(db_, path_, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name = 'schema_migrations' DESC, name");
  std::vector<std::string> tables;
  while (st.step() && tables.size() < 5) {
    if (st.text_col(0) == "schema_migrations") return;
    tables.push_back(st.text_col(0));
  }
  if (!tables.empty())
    throw DataError(fmt::format("'{}' is not a results database: it holds other tables ({}) and no schema_migrations; "
                                "give --results a new file or one a runner wrote (the file is left as it was)",
                                path_.string(), fmt::join(tables, ", ")));
}

int Store::schema_version() const {
  Stmt has(db_, path_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'");
  has.step();
  if (has.int_col(0) == 0) return 0;
  Stmt st(db_, path_, "SELECT coalesce(max(version), 0) FROM schema_migrations");
  st.step();
  return static_cast<int>(st.int_col(0));
}

void Store::migrate(int target_version) {
  const int current = schema_version();
  if (current > kSchemaVersion)
    throw DataError(fmt::format("results database '{}' has schema version {}, newer than this runner's {}; use a "
                                "newer runner (this one will not touch it)", path_.string(), current, kSchemaVersion));
  if (current >= target_version) return;
  // Every missing version in one transaction: a reader (`runner results` while a run creates the file) sees no
  // schema or the whole one, never tables half made. Read again under the write lock: runners started together
  // (--jobs) open a new file at the same moment.
  Transaction tx(*this);
  exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)");
  for (int v = schema_version() + 1; v <= target_version; ++v) {
    exec(kMigrations[v - 1]);
    Stmt st(db_, path_, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
    st.bind(1, v).bind(2, now_iso8601()).step();
  }
  tx.commit();
}

int64_t Store::upsert_experiment(const std::string& name, const std::string& source, const std::string& spec) {
  const std::string now = now_iso8601();
  Stmt st(db_, path_,
          "INSERT INTO experiments (name, source, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec, "
          "updated_at = excluded.updated_at RETURNING id");
  st.bind(1, name).bind(2, source).bind(3, spec).bind(4, now).bind(5, now);
  MMR_CHECK(st.step(), "upsert returned no row");
  return st.int_col(0);
}

TrialRow Store::ensure_trial(int64_t experiment_id, const Trial& trial) {
  {
    Stmt ins(db_, path_,
             "INSERT INTO trials (experiment_id, identity, ordinal, label, seed, config) VALUES (?, ?, ?, ?, ?, ?) "
             "ON CONFLICT (experiment_id, identity) DO UPDATE SET ordinal = excluded.ordinal, label = excluded.label");
    ins.bind(1, experiment_id).bind(2, trial.identity).bind(3, trial.ordinal).bind(4, trial.label)
        .bind(5, static_cast<int64_t>(trial.seed)).bind(6, trial.resolved_json);
    ins.step();
  }
  Stmt st(db_, path_, fmt::format("SELECT {} FROM trials WHERE experiment_id = ? AND identity = ?", kTrialColumns));
  st.bind(1, experiment_id).bind(2, trial.identity);
  MMR_CHECK(st.step(), "trial vanished after insert");
  return read_trial(st);
}

std::optional<TrialRow> Store::trial(int64_t trial_id) const {
  Stmt st(db_, path_, fmt::format("SELECT {} FROM trials WHERE id = ?", kTrialColumns));
  st.bind(1, trial_id);
  if (!st.step()) return std::nullopt;
  return read_trial(st);
}

int Store::recover_stale(const std::string& host) {
  std::vector<std::pair<int64_t, int>> stale;
  {
    Stmt st(db_, path_,
            "SELECT id, attempt, pid, coalesce(started_at, '') FROM trials WHERE status = 'running' AND host = ?");
    st.bind(1, host);
    while (st.step())
      if (!process_alive(st.int_col(2), st.text_col(3)))
        stale.emplace_back(st.int_col(0), static_cast<int>(st.int_col(1)));
  }
  for (const auto& [id, attempt] : stale)
    end_trial(id, attempt, "interrupted", "the process running this trial ended without recording an outcome");
  return static_cast<int>(stale.size());
}

std::optional<int> Store::begin_attempt(int64_t trial_id, const std::string& host, int64_t pid,
                                        const std::string& git_commit, const std::string& artifact_dir,
                                        const std::optional<std::string>& rerun_finished_before) {
  Transaction tx(*this);
  // One statement decides, so two processes cannot both claim a trial, nor a forced run claim one that finished
  // after it began (in another process that was running it then: found by probing, three forced runners ran 30
  // trials as 36 attempts).
  Stmt st(db_, path_,
          "UPDATE trials SET status = 'running', attempt = attempt + 1, started_at = ?, ended_at = NULL, host = ?, "
          "pid = ?, git_commit = ?, artifact_dir = ?, error = NULL WHERE id = ? AND status != 'running' "
          "AND (status != 'finished' OR coalesce(ended_at, '') < ?) RETURNING attempt");
  st.bind(1, now_iso8601()).bind(2, host).bind(3, pid).bind(4, git_commit).bind(5, artifact_dir).bind(6, trial_id);
  st.bind(7, rerun_finished_before.value_or(""));
  if (!st.step()) return std::nullopt;
  const int attempt = static_cast<int>(st.int_col(0));
  while (st.step()) {
  }
  tx.commit();
  return attempt;
}

void Store::commit_stage(int64_t trial_id, int attempt, const StageRecord& stage,
                         const std::optional<std::string>& trial_status, const std::string& error) {
  Transaction tx(*this);
  const std::string now = now_iso8601();
  insert_stage(db_, path_, trial_id, attempt, stage);
  insert_metrics(db_, path_, trial_id, attempt, stage, now);
  insert_artifacts(db_, path_, trial_id, attempt, stage);
  if (trial_status) update_trial_end(db_, path_, trial_id, attempt, *trial_status, error, now);
  kill_point("store.commit_stage.before_commit");  // every row written, none committed
  tx.commit();
  kill_point("store.commit_stage.after_commit");
}

void Store::snapshot_to(const fs::path& to) {
  Stmt st(db_, path_, "VACUUM INTO ?");
  st.bind(1, to.string());
  st.step();
}

std::optional<std::string> Store::import_trial(const fs::path& from, const std::string& experiment,
                                               const std::string& identity) {
  {
    Stmt attach(db_, path_, "ATTACH DATABASE ? AS src");
    attach.bind(1, from.string());
    attach.step();
  }
  struct Detach {
    Store& s;
    ~Detach() {
      try {
        s.exec("DETACH DATABASE src");
      } catch (...) {
      }
    }
  } detach{*this};
  const std::string find = "SELECT t.id, t.attempt, t.status FROM {}.trials t JOIN {}.experiments e ON "
                           "e.id = t.experiment_id WHERE e.name = ? AND t.identity = ?";
  auto locate = [&](const char* schema) -> std::optional<std::tuple<int64_t, int64_t, std::string>> {
    Stmt st(db_, path_, fmt::format(fmt::runtime(find), schema, schema));
    st.bind(1, experiment).bind(2, identity);
    if (!st.step()) return std::nullopt;
    return std::make_tuple(st.int_col(0), st.int_col(1), st.text_col(2));
  };
  {
    Stmt has(db_, path_, "SELECT 1 FROM src.sqlite_master WHERE type = 'table' AND name = 'trials'");
    if (!has.step()) return std::nullopt;  // a store file its job never got to write
  }
  Transaction tx(*this);
  const auto mine = locate("main"), theirs = locate("src");
  if (!theirs) return std::nullopt;
  if (!mine) throw DataError(fmt::format("{}: no trial {} of experiment '{}' to merge {} into", path_.string(),
                                         identity.substr(0, 12), experiment, from.string()));
  const auto [id, attempt, status] = *mine;
  const auto [src_id, src_attempt, src_status] = *theirs;
  if (src_attempt > attempt) {
    // Rows of the newer attempts, moved to this store's trial id (the same trial under another id, possibly).
    for (const char* copy : {
             "INSERT INTO stages (trial_id, attempt, name, ordinal, plugin, status, started_at, ended_at, error, "
             "stage_key, reused_from) SELECT ?, attempt, name, ordinal, plugin, status, started_at, ended_at, error, "
             "stage_key, reused_from FROM src.stages WHERE trial_id = ? AND attempt > ?",
             "INSERT INTO metrics (trial_id, attempt, stage, name, step, value, recorded_at) SELECT ?, attempt, "
             "stage, name, step, value, recorded_at FROM src.metrics WHERE trial_id = ? AND attempt > ? ORDER BY rowid",
             "INSERT INTO artifacts (trial_id, attempt, stage, name, path, sha256, bytes) SELECT ?, attempt, stage, "
             "name, path, sha256, bytes FROM src.artifacts WHERE trial_id = ? AND attempt > ?"}) {
      Stmt st(db_, path_, copy);
      st.bind(1, id).bind(2, src_id).bind(3, attempt);
      st.step();
    }
    Stmt up(db_, path_,
            "UPDATE trials SET (status, attempt, started_at, ended_at, host, pid, git_commit, artifact_dir, error) = "
            "(SELECT status, attempt, started_at, ended_at, host, pid, git_commit, artifact_dir, error FROM "
            "src.trials WHERE id = ?) WHERE id = ?");
    up.bind(1, src_id).bind(2, id);
    up.step();
  }
  exec("INSERT OR IGNORE INTO judgments SELECT * FROM src.judgments");
  tx.commit();
  return src_status;
}

void Store::fail_trial(const std::string& experiment, const std::string& identity, const std::string& error) {
  Stmt st(db_, path_,
          "UPDATE trials SET status = 'failed', error = ?, ended_at = ? WHERE status != 'finished' AND identity = ? "
          "AND experiment_id = (SELECT id FROM experiments WHERE name = ?)");
  st.bind(1, error).bind(2, now_iso8601()).bind(3, identity).bind(4, experiment);
  st.step();
}

std::optional<StageRecord> Store::previous_stage(int64_t trial_id, int before_attempt, const std::string& name,
                                                const std::string& plugin) const {
  StageRecord rec;
  int attempt = 0;
  {
    Stmt st(db_, path_,
            "SELECT attempt, ordinal, started_at, ended_at, coalesce(stage_key, ''), coalesce(reused_from, '') "
            "FROM stages WHERE trial_id = ? AND name = ? AND plugin = ? "
            "AND status = 'finished' AND attempt < ? ORDER BY attempt DESC LIMIT 1");
    st.bind(1, trial_id).bind(2, name).bind(3, plugin).bind(4, before_attempt);
    if (!st.step()) return std::nullopt;
    attempt = static_cast<int>(st.int_col(0));
    rec.ordinal = static_cast<int>(st.int_col(1));
    rec.started_at = st.text_col(2);
    rec.ended_at = st.text_col(3);
    rec.key = st.text_col(4);
    rec.reused_from = st.text_col(5);
  }
  rec.name = name;
  rec.plugin = plugin;
  rec.status = "finished";
  rec.metrics = stage_metrics(db_, path_, trial_id, attempt, name);
  rec.artifacts = stage_artifacts(db_, path_, trial_id, attempt, name);
  return rec;
}

std::vector<StageRecord> Store::stages_with_key(const std::string& key, const std::string& started_since) const {
  std::vector<std::tuple<int64_t, int, std::string, std::string>> found;  // trial, attempt, name, reused_from
  {
    Stmt st(db_, path_,
            "SELECT trial_id, attempt, name, coalesce(reused_from, '') FROM stages WHERE stage_key = ? AND "
            "status = 'finished' AND coalesce(started_at, '') >= ? ORDER BY ended_at DESC LIMIT 8");
    st.bind(1, key).bind(2, started_since);
    while (st.step()) found.emplace_back(st.int_col(0), static_cast<int>(st.int_col(1)), st.text_col(2), st.text_col(3));
  }
  std::vector<StageRecord> out;
  for (const auto& [trial_id, attempt, name, reused_from] : found) {
    StageRecord rec;
    rec.name = name;
    rec.status = "finished";
    rec.key = key;
    // A stage reused before names where it first ran; one that ran names itself.
    rec.reused_from = reused_from.empty() ? fmt::format("trial {} attempt {} stage {}", trial_id, attempt, name)
                                          : reused_from;
    rec.metrics = stage_metrics(db_, path_, trial_id, attempt, name);
    rec.artifacts = stage_artifacts(db_, path_, trial_id, attempt, name);
    out.push_back(std::move(rec));
  }
  return out;
}

bool Store::lease_stage(const std::string& key, const std::string& host, int64_t pid) {
  Transaction tx(*this);
  {
    Stmt st(db_, path_, "SELECT host, pid, since FROM stage_leases WHERE stage_key = ?");
    st.bind(1, key);
    // A holder on another host cannot be checked: its lease stands until it releases it.
    if (st.step() &&
        !(st.text_col(0) == host && (st.int_col(1) == pid || !process_alive(st.int_col(1), st.text_col(2)))))
      return false;
  }
  Stmt st(db_, path_, "INSERT OR REPLACE INTO stage_leases (stage_key, host, pid, since) VALUES (?, ?, ?, ?)");
  st.bind(1, key).bind(2, host).bind(3, pid).bind(4, now_iso8601()).step();
  tx.commit();
  return true;
}

std::optional<int64_t> Store::stage_lease_holder(const std::string& key) const {
  Stmt st(db_, path_, "SELECT pid FROM stage_leases WHERE stage_key = ?");
  st.bind(1, key);
  if (!st.step()) return std::nullopt;
  return st.int_col(0);
}

void Store::release_stage(const std::string& key, int64_t pid) {
  Stmt st(db_, path_, "DELETE FROM stage_leases WHERE stage_key = ? AND pid = ?");
  st.bind(1, key).bind(2, pid).step();
}

void Store::end_trial(int64_t trial_id, int attempt, const std::string& status, const std::string& error) {
  update_trial_end(db_, path_, trial_id, attempt, status, error, now_iso8601());
}

std::optional<std::string> Store::cached_judgment(const std::string& judge, const std::string& prompt) const {
  Stmt st(db_, path_, "SELECT reply FROM judgments WHERE judge = ? AND prompt_sha256 = ? AND prompt = ?");
  st.bind(1, judge).bind(2, sha256_hex(prompt)).bind(3, prompt);
  if (!st.step()) return std::nullopt;
  return st.text_col(0);
}

void Store::store_judgment(const std::string& judge, const std::string& prompt, const std::string& reply) {
  Stmt st(db_, path_,
          "INSERT OR REPLACE INTO judgments (judge, prompt_sha256, prompt, reply, created_at) VALUES (?, ?, ?, ?, ?)");
  st.bind(1, judge).bind(2, sha256_hex(prompt)).bind(3, prompt).bind(4, reply).bind(5, now_iso8601()).step();
  kill_point("store.judgment_stored");
}

std::vector<std::string> Store::experiment_names() const {
  std::vector<std::string> out;
  Stmt st(db_, path_, "SELECT name FROM experiments ORDER BY name");
  while (st.step()) out.push_back(st.text_col(0));
  return out;
}

bool Store::has_experiment(const std::string& name) const {
  Stmt st(db_, path_, "SELECT 1 FROM experiments WHERE name = ?");
  st.bind(1, name);
  return st.step();
}

std::vector<TrialSummary> Store::trials(const std::optional<std::string>& experiment) const {
  std::vector<TrialSummary> out;
  Stmt st(db_, path_,
          "SELECT e.name, t.id, t.ordinal, t.identity, t.label, t.status, t.attempt FROM trials t "
          "JOIN experiments e ON e.id = t.experiment_id WHERE ?1 IS NULL OR e.name = ?1 "
          "ORDER BY e.name, t.ordinal, t.id");
  st.bind(1, experiment);
  while (st.step())
    out.push_back({st.text_col(0), st.int_col(1), st.int_col(2), st.text_col(3), st.text_col(4), st.text_col(5),
                   static_cast<int>(st.int_col(6))});
  return out;
}

std::vector<FinalMetric> Store::final_metrics(const std::optional<std::string>& experiment) const {
  std::vector<FinalMetric> out;
  Stmt st(db_, path_,
          "SELECT f.trial_id, f.stage, f.name, f.value FROM final_metrics f "
          "JOIN experiments e ON e.id = f.experiment_id WHERE ?1 IS NULL OR e.name = ?1 ORDER BY f.stage, f.name");
  st.bind(1, experiment);
  while (st.step()) out.push_back({st.int_col(0), st.text_col(1), st.text_col(2), st.cell_col(3)});
  return out;
}

QueryResult Store::query(const std::string& sql) const {
  QueryResult out;
  const char* tail = sql.c_str();
  // Runs every statement; the result of the last one that returns columns is kept.
  while (tail && *tail) {
    sqlite3_stmt* raw = nullptr;
    const char* next = nullptr;
    if (sqlite3_prepare_v2(db_, tail, -1, &raw, &next) != SQLITE_OK)
      throw DataError(fmt::format("SQL error: {}", sqlite3_errmsg(db_)));
    tail = next;
    if (!raw) continue;  // whitespace or a comment
    // A read-only connection still runs VACUUM INTO, which writes a new file anywhere: refused with the writers.
    const std::string text = sqlite3_sql(raw);
    const size_t start = text.find_first_not_of(" \t\r\n");
    const bool vacuum = start != std::string::npos && strncasecmp(text.c_str() + start, "VACUUM", 6) == 0;
    if (mode_ == Mode::ReadOnly && vacuum) {  // (other writes fail in SQLite: "attempt to write a readonly database")
      sqlite3_finalize(raw);
      throw DataError("SQL error: VACUUM writes a database file; the results database is opened readonly here");
    }
    QueryResult r;
    const int n = sqlite3_column_count(raw);
    for (int i = 0; i < n; ++i) r.columns.emplace_back(sqlite3_column_name(raw, i));
    int rc;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      std::vector<QueryCell> row;
      for (int i = 0; i < n; ++i) row.push_back(read_cell(raw, i));
      r.rows.push_back(std::move(row));
    }
    const std::string why = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db_);
    sqlite3_finalize(raw);
    if (!why.empty()) throw DataError(fmt::format("SQL error: {}", why));
    if (n > 0) out = std::move(r);
  }
  return out;
}

}  // namespace mmr
