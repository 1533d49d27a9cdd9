// The routes of `runner serve`. See serve_routes.h.
#include "app/serve_routes.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "app/chat_html.h"  // generated from app/web/chat.html (app/CMakeLists.txt)
#include "app/serve_chat.h"
#include "core/lib/util/json_safe.h"
#include "core/lib/util/sha256.h"
#include "core/store.h"

namespace mmr::serve {

namespace fs = std::filesystem;
using nlohmann::json;

TempDir::TempDir(fs::path p) : path(std::move(p)) { fs::create_directories(path); }

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

namespace {

// The folders of earlier servers of this user that died without removing theirs (SIGKILL, a crash): the pid in
// their name is no longer running. Only our own folders, never through a symbolic link.
void remove_folders_of_dead_servers(const std::string& prefix) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::temp_directory_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());  // "<pid>-XXXXXX"
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || dash > 9 || rest.size() != dash + 7 ||
        rest.find_first_not_of("0123456789") != dash)
      continue;
    struct stat st {};
    const int64_t pid = std::stoll(rest.substr(0, dash));
    if (lstat(entry.path().c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && !process_alive(pid))
      fs::remove_all(entry.path(), ec);
  }
}

// A fresh folder for request images that only we can read: mkdtemp's name cannot be guessed ahead (and so
// prepared by another local user) and its mode is 0700. The pid in its name lets a later server remove it when
// this one dies without doing so.
fs::path private_temp_dir(const std::string& prefix) {
  remove_folders_of_dead_servers(prefix);
  std::string pattern = (fs::temp_directory_path() / (prefix + std::to_string(getpid()) + "-XXXXXX")).string();
  if (!mkdtemp(pattern.data()))
    throw IoError(fmt::format("cannot create a temporary folder '{}': {}", pattern, std::strerror(errno)));
  return pattern;
}

// Whether a bearer token is the key, compared as SHA-256 digests without an early exit: the time taken tells
// neither how much of a guessed key was right nor the key's length.
bool token_matches(const std::string& token, const std::string& key_sha256) {
  const std::string given = sha256_hex(token);
  unsigned char diff = 0;
  for (size_t i = 0; i < key_sha256.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key_sha256[i]);
  return diff == 0;
}

http::Response json_response(const json& body) {
  http::Response r;
  r.body = dump_text(body);
  return r;
}

// GET /v1/models: the one served model.
http::Response list_models(const ServeOptions& o) {
  return json_response(json{{"object", "list"},
                            {"data", json::array({json{{"id", o.served_model_name}, {"object", "model"},
                                                       {"created", 0}, {"owned_by", "mmrunner"}}})}});
}

// GET /: the chat page, built into the binary from app/web/chat.html.
http::Response chat_page() {
  http::Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body.assign(reinterpret_cast<const char*>(kChatHtml), sizeof(kChatHtml));
  // The page is self-contained: it loads nothing and talks only to this server.
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                         "img-src data: blob:; connect-src 'self'");
  return r;
}

}  // namespace

Routes::Routes(const ServeOptions& o, const std::string& api_key, ChatModel& model,
               std::shared_ptr<spdlog::logger> log)
    : o_(o), api_key_sha256_(api_key.empty() ? "" : sha256_hex(api_key)), log_(std::move(log)),
      scheduler_(model, o.max_batch, log_), temp_(private_temp_dir("mmr-serve-")), failures_left_(o.fail_first) {
  if (o.log_requests.empty()) return;
  request_log_.open(o.log_requests, std::ios::app);
  if (!request_log_) throw IoError("--log-requests: cannot open '" + o.log_requests + "' for appending");
}

Routes::~Routes() {
  stop(std::chrono::milliseconds(0));
  std::unique_lock<std::mutex> lock(threads_mu_);
  threads_cv_.wait(lock, [&] { return threads_ == 0; });
}

http::Handlers Routes::handlers() {
  http::Handlers h;
  h.check_head = [this](const http::Request& head) { return check_head(head); };
  h.handle = [this](const http::Request& request, std::shared_ptr<http::Reply> reply) { handle(request, reply); };
  h.on_reply = [this](const http::Request& request, int status) { log_reply(request, status); };
  return h;
}

void Routes::stop(std::chrono::milliseconds grace) {
  scheduler_.stop();
  std::unique_lock<std::mutex> lock(threads_mu_);
  threads_cv_.wait_for(lock, grace, [&] { return threads_ == 0; });
}

// With an API key every request must carry it as a bearer token, decided from the headers: a request without
// it gets 401 before its body is read.
std::optional<http::Response> Routes::check_head(const http::Request& head) const {
  // /health answers without a key, as vLLM's: a load balancer's probe carries none, and it tells only "up".
  // The chat page is static; its requests carry the key the user types into it.
  if (api_key_sha256_.empty() || head.path == "/health" || (head.path == "/" && head.method == "GET"))
    return std::nullopt;
  const std::string auth = head.header("Authorization");
  if (auth.rfind("Bearer ", 0) == 0 && token_matches(auth.substr(7), api_key_sha256_)) return std::nullopt;
  return error_response(401, auth.empty() ? "missing bearer token (Authorization: Bearer <key>)"
                                          : "invalid bearer token", "authentication_error");
}

void Routes::handle(const http::Request& request, const std::shared_ptr<http::Reply>& reply) {
  const std::string& path = request.path;
  if (request.method == "GET" && path == "/health") return reply->respond(json_response({{"status", "ok"}}));
  if (request.method == "GET" && path == "/") return reply->respond(chat_page());
  if (request.method == "GET" && path == "/v1/models") return reply->respond(list_models(o_));
  if (request.method == "POST" && path == "/v1/chat/completions")
    return run_detached([this, body = request.body, reply] {
      try {
        chat_completions(body, *reply);
      } catch (const std::exception& e) {
        log_->error("serve: POST /v1/chat/completions failed: {}", e.what());
        if (!reply->answered()) reply->respond(error_response(500, std::string("internal error: ") + e.what(),
                                                              "server_error"));
      }
    });
  reply->respond(error_response(
      404, fmt::format("no route {} {} (routes: POST /v1/chat/completions, GET /v1/models, GET /)", request.method,
                       path), "not_found_error"));
}

// POST /v1/chat/completions, on a thread of its own: parsed, queued for the model, answered.
void Routes::chat_completions(const std::string& text, http::Reply& reply) {
  const int64_t n = ++request_counter_;
  if (failures_left_.fetch_sub(1) > 0) {
    http::Response r = error_response(o_.fail_status, fmt::format("test hook --fail-first: failing request {} with {}",
                                                                  n, o_.fail_status),
                                      o_.fail_status == 429 ? "rate_limit_error" : "server_error");
    if (o_.fail_status == 429) r.headers.emplace_back("Retry-After", "0");
    return reply.respond(std::move(r));
  }
  json body;
  try {
    body = parse_json_limited(text);
  } catch (const json::parse_error& e) {
    return reply.respond(error_response(400, std::string("the request body is not valid JSON: ") + e.what(),
                                        "invalid_request_error"));
  } catch (const JsonTooDeep& e) {
    return reply.respond(error_response(400, std::string("the request body is ") + e.what(), "invalid_request_error"));
  }
  auto images = std::make_shared<TempDir>(temp_.path / fmt::format("request-{}", n));
  ChatRequest chat;
  try {
    chat = parse_chat_request(body, images->path, o_.limits);
  } catch (const RequestError& e) {
    return reply.respond(error_response(400, e.what(), "invalid_request_error"));
  }
  if (!chat.model.empty() && chat.model != o_.served_model_name)
    return reply.respond(error_response(404, fmt::format("model '{}' is not served here; this server serves '{}'",
                                                         chat.model, o_.served_model_name), "not_found_error"));
  const ReplyInfo info{fmt::format("chatcmpl-{}", n), o_.served_model_name,
                       std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count(),
                       chat.stream, chat.include_usage};
  auto request = std::make_shared<ScheduledRequest>(static_cast<uint64_t>(n), info.id, std::move(chat.sample),
                                                    std::move(chat.config), images);
  images.reset();  // the request owns its images now: they go once the model has read them
  scheduler_.submit(request);
  answer_chat(scheduler_, request, info, reply, log_);
}

// One line per reply, written before the reply is, so a client that has its reply finds the request in the
// log (--log-requests). Never the headers: they may carry the key.
void Routes::log_reply(const http::Request& request, int status) {
  log_->debug("serve: {} {} -> {}", request.method, request.path, status);
  if (!request_log_.is_open()) return;
  const json line{{"time", now_iso8601()}, {"method", request.method}, {"path", request.path}, {"status", status},
                  {"body_sha256", sha256_hex(request.body)}};
  std::lock_guard<std::mutex> lock(log_mu_);
  request_log_ << dump_text(line) << "\n";
  request_log_.flush();
}

void Routes::run_detached(std::function<void()> f) {
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    ++threads_;
  }
  std::thread([this, f = std::move(f)]() mutable {
    f();
    f = nullptr;  // its reply goes before this object may
    std::lock_guard<std::mutex> lock(threads_mu_);
    --threads_;
    threads_cv_.notify_all();
  }).detach();
}

}  // namespace mmr::serve
