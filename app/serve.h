// `runner serve`: an OpenAI-compatible HTTP server over any model plugin that implements ChatModel.
//
//   runner serve --model llava --model-opt path=DIR [--model-opt key=value]... [--host 127.0.0.1] [--port 8000]
//   runner serve --model-config model.yaml ...        (a YAML map: {plugin: llava, path: DIR, ...})
//
// Endpoints: POST /v1/chat/completions (app/openai_chat.h says how messages become a ChatSample), GET /v1/models,
// and GET / a chat page (app/web/chat.html, built into the binary). One thread owns the model
// (serve_scheduler.h): with a model that batches, up to --max-batch requests decode together, else one request
// generates at a time; "stream": true answers with server-sent events (serve_chat.h). Errors are OpenAI-style
// JSON: 400 bad input, 401 bad or missing bearer token (with --api-key-env NAME), 404 unknown path or model, 413
// body too large, 431 headers too large, 503 too many connections, 500 a failure inside the model. The HTTP
// layer and its limits (request deadline, body and header sizes, connections) are serve_http.h's.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "app/openai_chat.h"
#include "app/serve_http.h"
#include "core/registry.h"

namespace CLI {
class App;
}

namespace mmr::serve {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;              // 0: any free port (printed, and written to port_file)
  std::string model_plugin;     // --model NAME
  YAML::Node model_options{YAML::NodeType::Map};
  std::string model_source = "command line";
  std::string served_model_name;  // default: the plugin name
  std::string api_key_env;      // NAME of the variable holding the bearer token; empty: no auth
  http::Limits http;             // body and header sizes, request deadline, connections
  RequestLimits limits;          // what one chat request may ask for
  size_t max_batch = 8;         // requests decoding together (models with a DecodeBatch); the rest wait
  std::string port_file;        // written atomically once listening
  std::string log_requests;     // JSONL: one line per request (time, method, path, status, body_sha256)
  // Test hook: the first N chat-completion requests fail with fail_status (503, or 429 with Retry-After: 0),
  // so a client's retries can be tested against the real server.
  int fail_first = 0;
  int fail_status = 503;
};

// Parses the arguments after `serve`; throws ConfigError naming the argument.
ServeOptions parse_serve_args(const std::vector<std::string>& args);

// The same options declared on a CLI11 command (`runner serve`, app/command_line.cpp): set into `o` as they are
// parsed, --model-config's file into `config_file`; then finish_serve_options reads that file and checks the
// options together (a ConfigError naming what is wrong).
void add_serve_options(CLI::App& app, ServeOptions& o, std::string& config_file);
void finish_serve_options(ServeOptions& o, const std::string& config_file);

// Loads the model, serves until SIGINT/SIGTERM (stop_flag()), returns the exit status.
int run_server(const ServeOptions& options, Registry& registry);

}  // namespace mmr::serve
