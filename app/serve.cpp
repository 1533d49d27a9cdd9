// `runner serve`: the command line, then the HTTP server. See serve.h.
#include "app/serve.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <thread>

#include "app/chat_html.h"  // generated from app/web/chat.html (app/CMakeLists.txt)
#include "app/serve_chat.h"
#include "app/serve_scheduler.h"
#include "core/api/chat_api.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/sha256.h"
#include "core/runner.h"
#include "core/store.h"
#include "core/lib/util/json_safe.h"

namespace mmr::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- the command line ----

int64_t to_int(const std::string& name, const std::string& v) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw ConfigError(fmt::format("{}: expected an integer, found '{}'", name, v));
}

// --allowed-media-dir DIR: an existing folder, kept as its real path (what image paths are compared with).
fs::path allowed_media_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path real = fs::canonical(dir, ec);
  if (ec || !fs::is_directory(real, ec))
    throw ConfigError(fmt::format("--allowed-media-dir '{}': expected an existing folder", dir));
  return real;
}

// Sets option `name` from its value (`next` reads it); false when `name` is not an option of serve.
bool set_option(ServeOptions& o, std::string& config_file, const std::string& name,
                const std::function<std::string()>& next) {
  if (name == "--model") {
    o.model_plugin = next();
    if (o.model_plugin.rfind("plugin=", 0) == 0) o.model_plugin = o.model_plugin.substr(7);  // --model plugin=llava
  } else if (name == "--model-opt") {
    const std::string kv = next();
    const size_t k = kv.find('=');
    if (k == std::string::npos || k == 0) throw ConfigError(fmt::format("--model-opt '{}': expected key=value", kv));
    o.model_options[kv.substr(0, k)] = YAML::Load(kv.substr(k + 1));
  } else if (name == "--model-config") config_file = next();
  else if (name == "--host") o.host = next();
  else if (name == "--port") o.port = static_cast<int>(to_int(name, next()));
  else if (name == "--port-file") o.port_file = next();
  else if (name == "--served-model-name") o.served_model_name = next();
  else if (name == "--api-key-env") o.api_key_env = next();
  else if (name == "--max-request-bytes") o.max_request_bytes = static_cast<size_t>(to_int(name, next()));
  else if (name == "--max-batch") o.max_batch = static_cast<size_t>(std::max<int64_t>(0, to_int(name, next())));
  else if (name == "--default-max-tokens") o.limits.default_max_tokens = to_int(name, next());
  else if (name == "--max-tokens-limit") o.limits.max_tokens_limit = to_int(name, next());
  else if (name == "--allowed-media-dir") o.limits.allowed_media_dirs.push_back(allowed_media_dir(next()));
  else if (name == "--log-requests") o.log_requests = next();
  else if (name == "--fail-first") o.fail_first = static_cast<int>(to_int(name, next()));
  else if (name == "--fail-status") o.fail_status = static_cast<int>(to_int(name, next()));
  else return false;
  return true;
}

// serve's options as `runner serve --help` lists them: name, value, help; set_option reads each value.
struct ServeFlag {
  const char* name;
  const char* value;
  const char* help;
};
const ServeFlag kServeFlags[] = {
    {"--model", "NAME", "model plugin (e.g. llava, or plugin=llava); --model-opt sets its options"},
    {"--model-opt", "KEY=VALUE", "an option of the model, its value parsed as YAML (repeatable:\n"
                                 "--model-opt path=/models/x --model-opt dtype=bfloat16)"},
    {"--model-config", "FILE.yaml", "or: a YAML map {plugin: NAME, option: value, ...}"},
    {"--host", "HOST", "address to bind (default 127.0.0.1: this machine only)"},
    {"--port", "N", "port (default 8000; 0 = any free port, printed and written to --port-file)"},
    {"--port-file", "PATH", "write the port there once listening"},
    {"--served-model-name", "NAME", "the model id clients send and /v1/models lists (default: the plugin name)"},
    {"--api-key-env", "NAME", "require \"Authorization: Bearer <value of $NAME>\" on every request (but GET /health)"},
    {"--allowed-media-dir", "DIR", "images may be given as local paths or file:// URLs under DIR (repeatable;\n"
                                   "none given: only data: URLs)"},
    {"--max-request-bytes", "N", "largest request body (default 33554432)"},
    {"--max-batch", "N", "requests that decode together, for models that batch (default 8; others wait)"},
    {"--default-max-tokens", "N", "max_tokens when a request gives none (default 512; at most --max-tokens-limit)"},
    {"--max-tokens-limit", "N", "largest max_tokens accepted (default 4096)"},
    {"--log-requests", "PATH", "append one JSON line per request (time, method, path, status, body_sha256)"},
    {"--fail-first", "N", "TEST HOOK: fail the first N chat completions with --fail-status (503 or 429)"},
    {"--fail-status", "CODE", "status of those failures (default 503)"},
};

// --model-config FILE: a YAML map {plugin: NAME, option: value, ...} in place of --model and --model-opt.
void read_model_config(const std::string& config_file, ServeOptions& o) {
  if (!o.model_plugin.empty()) throw ConfigError("serve: give --model or --model-config, not both");
  YAML::Node node;
  try {
    node = YAML::LoadFile(config_file);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: {}", config_file, e.what()));
  }
  if (!node.IsMap() || !node["plugin"] || !node["plugin"].IsScalar())
    throw ConfigError(fmt::format("{}: expected a YAML map with 'plugin: <model plugin name>' and its options",
                                  config_file));
  o.model_plugin = node["plugin"].Scalar();
  for (const auto& kv : node)
    if (kv.first.Scalar() != "plugin") o.model_options[kv.first.Scalar()] = kv.second;
  o.model_source = config_file;
}

// The checks across options, and the served name's default.
void finish_options(ServeOptions& o) {
  if (o.model_plugin.empty())
    throw ConfigError("serve: no model given (--model NAME or --model-config FILE.yaml; runner serve --help)");
  if (o.port < 0 || o.port > 65535) throw ConfigError(fmt::format("--port {}: expected 0..65535", o.port));
  if (o.fail_status != 503 && o.fail_status != 429 && o.fail_status != 500)
    throw ConfigError(fmt::format("--fail-status {}: expected 429, 500 or 503", o.fail_status));
  if (o.max_batch < 1) throw ConfigError("--max-batch: expected a positive integer");
  if (o.limits.default_max_tokens < 1 || o.limits.default_max_tokens > o.limits.max_tokens_limit)
    throw ConfigError("--default-max-tokens: expected 1..--max-tokens-limit");
  if (o.served_model_name.empty()) o.served_model_name = o.model_plugin;
}

// ---- the server ----

// A folder removed when the request is done.
struct TempDir {
  explicit TempDir(fs::path p) : path(std::move(p)) { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

// A fresh folder for request images that only we can read: mkdtemp's name cannot be guessed ahead (and so
// prepared by another local user) and its mode is 0700.
fs::path private_temp_dir(const std::string& prefix) {
  std::string pattern = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
  if (!mkdtemp(pattern.data()))
    throw IoError(fmt::format("cannot create a temporary folder '{}': {}", pattern, std::strerror(errno)));
  return pattern;
}

// Compares without an early exit, so the time taken does not tell how much of a guessed key was right.
bool constant_time_equal(const std::string& given, const std::string& key) {
  if (given.size() != key.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

// The bearer token of --api-key-env NAME (empty: no authentication).
std::string api_key_from_env(const ServeOptions& o) {
  if (o.api_key_env.empty()) return "";
  const char* k = std::getenv(o.api_key_env.c_str());
  if (!k || !*k) throw ConfigError(fmt::format("--api-key-env {}: the environment variable is not set", o.api_key_env));
  return k;
}

// What the request handlers share: the model's thread, the per-request image folders, the counters and the
// request log.
struct ServerState {
  ServerState(const ServeOptions& o, ChatModel& model, std::shared_ptr<spdlog::logger> log)
      : o(o), log(std::move(log)), scheduler(model, o.max_batch, this->log),
        temp(private_temp_dir("mmr-serve-")), failures_left(o.fail_first) {
    if (o.log_requests.empty()) return;
    request_log.open(o.log_requests, std::ios::app);
    if (!request_log) throw IoError("--log-requests: cannot open '" + o.log_requests + "' for appending");
  }

  const ServeOptions& o;
  std::shared_ptr<spdlog::logger> log;
  Scheduler scheduler;
  TempDir temp;  // request-<n>/ holds the images of request n until the model has read them
  std::mutex log_mu;
  std::atomic<int64_t> request_counter{0};
  std::atomic<int> failures_left;
  std::ofstream request_log;
};

// With an API key, every request must carry it as a bearer token; others get 401.
void require_bearer_token(httplib::Server& server, const std::string& api_key) {
  server.set_pre_routing_handler([api_key](const httplib::Request& req, httplib::Response& res) {
    // /health answers without a key, as vLLM's: a load balancer's probe carries none, and it tells only "up".
    // The chat page is static; its requests carry the key the user types into it.
    if (api_key.empty() || req.path == "/health" || (req.path == "/" && req.method == "GET"))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && constant_time_equal(auth.substr(7), api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, 401, auth.empty() ? "missing bearer token (Authorization: Bearer <key>)" : "invalid bearer token",
               "authentication_error");
    return httplib::Server::HandlerResponse::Handled;
  });
}

// GET /v1/models: the one served model.
void list_models(const ServeOptions& o, httplib::Response& res) {
  const json body{{"object", "list"},
                  {"data", json::array({json{{"id", o.served_model_name}, {"object", "model"}, {"created", 0},
                                             {"owned_by", "mmrunner"}}})}};
  res.set_content(dump_text(body), "application/json");
}

// POST /v1/chat/completions.
void chat_completions(ServerState& s, const httplib::Request& req, httplib::Response& res) {
  const ServeOptions& o = s.o;
  const int64_t n = ++s.request_counter;
  if (s.failures_left.fetch_sub(1) > 0) {
    if (o.fail_status == 429) res.set_header("Retry-After", "0");
    const std::string message = fmt::format("test hook --fail-first: failing request {} with {}", n, o.fail_status);
    return send_error(res, o.fail_status, message, o.fail_status == 429 ? "rate_limit_error" : "server_error");
  }
  json body;
  try {
    body = parse_json_limited(req.body);
  } catch (const json::parse_error& e) {
    return send_error(res, 400, std::string("the request body is not valid JSON: ") + e.what(),
                      "invalid_request_error");
  } catch (const JsonTooDeep& e) {
    return send_error(res, 400, std::string("the request body is ") + e.what(), "invalid_request_error");
  }
  auto images = std::make_shared<TempDir>(s.temp.path / fmt::format("request-{}", n));
  ChatRequest chat;
  try {
    chat = parse_chat_request(body, images->path, o.limits);
  } catch (const RequestError& e) {
    return send_error(res, 400, e.what(), "invalid_request_error");
  }
  if (!chat.model.empty() && chat.model != o.served_model_name)
    return send_error(res, 404, fmt::format("model '{}' is not served here; this server serves '{}'", chat.model,
                                            o.served_model_name), "not_found_error");
  const ReplyInfo info{fmt::format("chatcmpl-{}", n), o.served_model_name,
                       std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count(),
                       chat.stream, chat.include_usage};
  auto request = std::make_shared<ScheduledRequest>(static_cast<uint64_t>(n), info.id, std::move(chat.sample),
                                                    std::move(chat.config), images);
  images.reset();  // the request owns its images now: they go once the model has read them
  s.scheduler.submit(request);
  answer_chat(s.scheduler, request, info, req, res, s.log);
}

// GET /: the chat page, built into the binary from app/web/chat.html.
void chat_page(httplib::Response& res) {
  res.set_content(reinterpret_cast<const char*>(kChatHtml), sizeof(kChatHtml), "text/html; charset=utf-8");
  // The page is self-contained: it loads nothing and talks only to this server.
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
                 "connect-src 'self'");
}

// OpenAI-style JSON bodies for exceptions in handlers and for httplib's own errors (404, 413, ...).
void install_error_handlers(httplib::Server& server, const std::shared_ptr<spdlog::logger>& log) {
  server.set_exception_handler([log](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log->error("serve: {} {} failed: {}", req.method, req.path, what);
    send_error(res, 500, "internal error: " + what, "server_error");
  });
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a handler already wrote an error body
    if (res.status == 404)
      send_error(res, 404, fmt::format("no route {} {} (routes: POST /v1/chat/completions, GET /v1/models, GET /)",
                                       req.method, req.path), "not_found_error");
    else if (res.status == 413)
      send_error(res, 413, "request body too large (see --max-request-bytes)", "invalid_request_error");
    else
      send_error(res, res.status, fmt::format("HTTP {}", res.status), "invalid_request_error");
  });
}

// The post-routing handler runs after the error handler and before the response is written, so a client that
// has its reply finds the request in the log (--log-requests).
void install_request_log(httplib::Server& server, ServerState& s) {
  server.set_post_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    s.log->debug("serve: {} {} -> {}", req.method, req.path, res.status);
    if (!s.request_log.is_open()) return;
    const json line{{"time", now_iso8601()}, {"method", req.method}, {"path", req.path}, {"status", res.status},
                    {"body_sha256", sha256_hex(req.body)}};
    std::lock_guard<std::mutex> lock(s.log_mu);
    s.request_log << dump_text(line) << "\n";
    s.request_log.flush();
  });
}

// Binds, announces the port (stdout and --port-file) and serves until stop_flag() or the listener ends;
// `before_stop` runs first then (it ends the requests in flight, whose handlers the listener waits for).
void listen_until_stopped(httplib::Server& server, const ServeOptions& o, const std::function<void()>& before_stop) {
  const int port = o.port == 0 ? server.bind_to_any_port(o.host) : (server.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port <= 0) throw IoError(fmt::format("serve: cannot bind {}:{} (in use, or not an address of this machine)",
                                           o.host, o.port));
  std::atomic<bool> listener_done{false};
  std::thread listener([&] {
    server.listen_after_bind();
    listener_done = true;
  });
  if (!o.port_file.empty()) write_file_atomic(o.port_file, fmt::format("{}\n", port));
  std::cout << fmt::format("runner serve: listening on http://{}:{}/v1 (model '{}')", o.host, port,
                           o.served_model_name) << std::endl;
  while (!stop_flag() && !listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  before_stop();
  // stop() is lost if it comes before the listener started: repeat it until the listener has returned.
  while (!listener_done) {
    server.stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  listener.join();
}

}  // namespace

void add_serve_options(CLI::App& app, ServeOptions& o, std::string& config_file) {
  for (const ServeFlag& f : kServeFlags) {
    const std::string name = f.name;
    // Read at each occurrence, in command-line order (a repeated option: each --model-opt, the last --port).
    app.add_option_function<std::string>(
           name,
           [&o, &config_file, name](const std::string& v) { set_option(o, config_file, name, [&v] { return v; }); },
           f.help)
        ->type_name(f.value)
        ->trigger_on_parse();
  }
}

void finish_serve_options(ServeOptions& o, const std::string& config_file) {
  if (!config_file.empty()) read_model_config(config_file, o);
  finish_options(o);
}

ServeOptions parse_serve_args(const std::vector<std::string>& args) {
  ServeOptions o;
  std::string config_file;
  CLI::App app("", "runner serve");
  app.set_help_flag();  // `runner serve --help` is the runner's command line's
  add_serve_options(app, o, config_file);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    throw ConfigError(fmt::format("serve: {}", e.what()));
  }
  finish_serve_options(o, config_file);
  return o;
}

int run_server(const ServeOptions& o, Registry& registry) {
  auto log = spdlog::default_logger();
  const std::string api_key = api_key_from_env(o);
  log->info("serve: loading model plugin '{}'", o.model_plugin);
  const PluginInfo& info = registry.find(PluginKind::Model, o.model_plugin);
  std::shared_ptr<Plugin> plugin = registry.create(PluginKind::Model, o.model_plugin, o.model_options, o.model_source);
  log->info("serve: model plugin '{}' from {}", info.name, info.path.string());
  ServerState state(o, chat_model(*plugin, "serve: model '" + o.model_plugin + "'"), log);

  httplib::Server server;
  server.set_payload_max_length(o.max_request_bytes);
  require_bearer_token(server, api_key);
  server.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) { list_models(o, res); });
  server.Get("/health", [](const httplib::Request&, httplib::Response& res) {  // the model is loaded by now
    res.set_content(R"({"status": "ok"})", "application/json");
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) { chat_page(res); });
  server.Post("/v1/chat/completions",
              [&](const httplib::Request& req, httplib::Response& res) { chat_completions(state, req, res); });
  install_error_handlers(server, log);
  install_request_log(server, state);
  // Handlers wait for the model's thread, streams for their clients: a pool with room for the batch and its queue.
  server.new_task_queue = [&o] { return new httplib::ThreadPool(std::max<size_t>(16, 4 * o.max_batch)); };
  listen_until_stopped(server, o, [&] { state.scheduler.stop(); });
  log->info("serve: stopped after {} chat completion request(s)", state.request_counter.load());
  return 0;
}

}  // namespace mmr::serve
