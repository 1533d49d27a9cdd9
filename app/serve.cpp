// `runner serve`: the command line, then the HTTP server. See serve.h.
#include "app/serve.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <thread>

#include "app/serve_routes.h"
#include "core/api/chat_api.h"
#include "core/lib/util/atomic_file.h"
#include "core/runner.h"

namespace mmr::serve {

namespace fs = std::filesystem;

namespace {

// Threads reading and writing connections (asynchronously: none is ever held by one client).
constexpr size_t kIoThreads = 4;

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

// A positive count (sizes, limits).
size_t to_count(const std::string& name, const std::string& v) {
  const int64_t x = to_int(name, v);
  if (x < 1) throw ConfigError(fmt::format("{}: expected a positive integer, found '{}'", name, v));
  return static_cast<size_t>(x);
}

// Seconds, fractions allowed (tests use short deadlines).
std::chrono::milliseconds to_duration(const std::string& name, const std::string& v) {
  try {
    size_t used = 0;
    const double s = std::stod(v, &used);
    if (used == v.size() && s >= 0.001 && s <= 86400) return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
  } catch (const std::exception&) {
  }
  throw ConfigError(fmt::format("{}: expected seconds in [0.001, 86400], found '{}'", name, v));
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
  else if (name == "--max-body-bytes" || name == "--max-request-bytes") o.http.max_body_bytes = to_count(name, next());
  else if (name == "--max-header-bytes") o.http.max_header_bytes = to_count(name, next());
  else if (name == "--request-timeout") o.http.request_timeout = to_duration(name, next());
  else if (name == "--max-connections") o.http.max_connections = to_count(name, next());
  else if (name == "--max-messages") o.limits.max_messages = static_cast<int64_t>(to_count(name, next()));
  else if (name == "--max-images") o.limits.max_images = to_int(name, next());
  else if (name == "--max-image-pixels") o.limits.max_image_pixels = static_cast<int64_t>(to_count(name, next()));
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
    {"--max-body-bytes", "N", "largest request body, declared or chunked: 413 past it (default 33554432)"},
    {"--max-request-bytes", "N", "the same as --max-body-bytes (its older name)"},
    {"--max-header-bytes", "N", "largest request head (request line and headers): 431 past it (default 16384)"},
    {"--request-timeout", "SECONDS", "a request's head and body must arrive within this, else the connection is\n"
                                     "closed; also the limit on each write of a reply (default 30)"},
    {"--max-connections", "N", "connections open at once; one more gets 503 (default 512)"},
    {"--max-messages", "N", "most messages in one chat request (default 256)"},
    {"--max-images", "N", "most images in one chat request (default 8)"},
    {"--max-image-pixels", "N", "largest width x height of an image, read from its header before it is decoded\n"
                                "(default 50000000)"},
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
  if (o.limits.max_images < 0) throw ConfigError("--max-images: expected 0 or more");
  if (o.limits.default_max_tokens < 1 || o.limits.default_max_tokens > o.limits.max_tokens_limit)
    throw ConfigError("--default-max-tokens: expected 1..--max-tokens-limit");
  if (o.served_model_name.empty()) o.served_model_name = o.model_plugin;
}

// ---- the server ----

// The bearer token of --api-key-env NAME (empty: no authentication).
std::string api_key_from_env(const ServeOptions& o) {
  if (o.api_key_env.empty()) return "";
  const char* k = std::getenv(o.api_key_env.c_str());
  if (!k || !*k) throw ConfigError(fmt::format("--api-key-env {}: the environment variable is not set", o.api_key_env));
  return k;
}

// Announces the port (stdout and --port-file) and waits for SIGINT/SIGTERM (stop_flag()).
void announce_and_wait(const ServeOptions& o, int port) {
  if (!o.port_file.empty()) write_file_atomic(o.port_file, fmt::format("{}\n", port));
  std::cout << fmt::format("runner serve: listening on http://{}:{}/v1 (model '{}')", o.host, port,
                           o.served_model_name) << std::endl;
  while (!stop_flag()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
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
  Routes routes(o, api_key, chat_model(*plugin, "serve: model '" + o.model_plugin + "'"), log);
  http::Server server(o.http, routes.handlers(), log);
  const int port = server.bind(o.host, o.port);
  // Reading and writing is asynchronous: these threads are never held by a slow client, and chat completions
  // wait for the model on threads of their own.
  server.start(kIoThreads);
  announce_and_wait(o, port);
  server.stop_accepting();
  routes.stop(std::chrono::seconds(5));  // the requests in flight end with 503, written to their clients
  server.stop();
  log->info("serve: stopped after {} chat completion request(s)", routes.chat_requests());
  return 0;
}

}  // namespace mmr::serve
