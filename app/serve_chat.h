// The reply to one chat completion in `runner serve`, once its request is parsed and queued (serve_scheduler.h):
// the request's thread waits for the model thread while it watches the client's connection, then answers with
// the chat.completion JSON or, with "stream": true, with server-sent events of chat.completion.chunk. A client
// that goes away has its request cancelled.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>

#include "app/openai_chat.h"
#include "app/serve_http.h"
#include "app/serve_scheduler.h"

namespace mmr::serve {

// An OpenAI-style JSON error reply.
http::Response error_response(int status, const std::string& message, const std::string& type);

// What every reply of one request carries.
struct ReplyInfo {
  std::string id;     // chatcmpl-<n>
  std::string model;  // the served model name
  int64_t created = 0;
  bool stream = false;
  bool include_usage = false;
};

// Answers `request` (already submitted to `scheduler`) through `reply`, blocking until the answer is written or
// the client is gone. Errors before the first byte are JSON errors with their status; with streaming, an error
// after it is an SSE error event, then the stream ends.
void answer_chat(Scheduler& scheduler, const std::shared_ptr<ScheduledRequest>& request, const ReplyInfo& info,
                 http::Reply& reply, const std::shared_ptr<spdlog::logger>& log);

}  // namespace mmr::serve
