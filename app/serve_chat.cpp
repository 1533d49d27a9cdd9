// The reply to one chat completion: waiting, the JSON reply, the event stream, cancellation. See serve_chat.h.
#include "app/serve_chat.h"

#include <chrono>
#include <optional>

#include "core/lib/util/json_safe.h"

namespace mmr::serve {

using nlohmann::json;

namespace {

// How often a waiting request's thread looks whether its client is still there.
constexpr std::chrono::milliseconds kPoll{100};

// Waits until the request has failed or finished, or (`until_started`) the model has taken it; nullopt when the
// client went away first (the request is cancelled).
std::optional<RequestProgress> wait_for(Scheduler& scheduler, const std::shared_ptr<ScheduledRequest>& request,
                                        const http::Reply& reply, bool until_started) {
  RequestProgress p;
  for (;;) {
    p = request->wait(p.version, kPoll);
    if (p.error_status || p.finished || (until_started && p.started)) return p;
    if (reply.client_gone()) {
      scheduler.cancel(request);
      return std::nullopt;
    }
  }
}

std::string error_type(int status) { return status < 500 ? "invalid_request_error" : "server_error"; }

// The event stream of one reply: each new progress of the model is sent as what is settled of it.
class EventStream {
 public:
  EventStream(Scheduler& scheduler, std::shared_ptr<ScheduledRequest> request, ReplyInfo info, http::Reply& reply,
              std::shared_ptr<spdlog::logger> log)
      : scheduler_(scheduler), request_(std::move(request)), info_(std::move(info)), reply_(reply),
        log_(std::move(log)), deltas_(request_->config.stop_strings) {}

  // Streams until the reply is complete, failed or its client gone (the request is then cancelled).
  void run() {
    if (!reply_.start_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}}) ||
        !send(chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr)))
      return scheduler_.cancel(request_);
    for (int64_t seen = 0;;) {
      const RequestProgress p = request_->wait(seen, kPoll);
      seen = p.version;
      if (p.error_status) {
        send(error_body(p.error, error_type(p.error_status)));
        return reply_.end_stream();
      }
      if (p.finished) {
        if (finish(p.result)) reply_.end_stream();
        return;
      }
      const std::string delta = deltas_.next(p.text);
      const bool sent = delta.empty() ? !reply_.client_gone() : send(chunk(json{{"content", delta}}, nullptr));
      if (!sent) return scheduler_.cancel(request_);
    }
  }

 private:
  json chunk(const json& delta, const json& finish) const {
    return completion_chunk(info_.id, info_.model, info_.created, delta, finish, info_.include_usage);
  }
  bool send(const json& data) { return reply_.write(sse_event(data)); }
  // The rest of the text, the finish reason, the usage when asked for, then [DONE]; false when the client is gone.
  bool finish(const Generation& g) {
    const std::string rest = deltas_.finish(g.text);
    if (!deltas_.consistent())
      log_->warn("serve: {}: the streamed text was not a prefix of the final reply (the tokenizer's decoding of "
                 "more tokens changed earlier text)", info_.id);
    bool ok = rest.empty() || send(chunk(json{{"content", rest}}, nullptr));
    ok = ok && send(chunk(json::object(), finish_reason(g)));
    if (info_.include_usage) ok = ok && send(usage_chunk(g, info_.id, info_.model, info_.created));
    return ok && reply_.write("data: [DONE]\n\n");
  }

  Scheduler& scheduler_;
  std::shared_ptr<ScheduledRequest> request_;
  const ReplyInfo info_;
  http::Reply& reply_;
  std::shared_ptr<spdlog::logger> log_;
  DeltaStream deltas_;
};

}  // namespace

http::Response error_response(int status, const std::string& message, const std::string& type) {
  http::Response r;
  r.status = status;
  r.body = dump_text(error_body(message, type));
  return r;
}

void answer_chat(Scheduler& scheduler, const std::shared_ptr<ScheduledRequest>& request, const ReplyInfo& info,
                 http::Reply& reply, const std::shared_ptr<spdlog::logger>& log) {
  const std::optional<RequestProgress> p = wait_for(scheduler, request, reply, info.stream);
  if (!p) return reply.respond(error_response(499, "the client closed the connection", "invalid_request_error"));
  if (p->error_status) return reply.respond(error_response(p->error_status, p->error, error_type(p->error_status)));
  if (!info.stream) {
    // Generated text may end inside a multi-byte character: U+FFFD for broken UTF-8 instead of an exception.
    http::Response r;
    r.body = chat_completion(p->result, info.id, info.model, info.created)
                 .dump(-1, ' ', false, json::error_handler_t::replace);
    return reply.respond(std::move(r));
  }
  EventStream(scheduler, request, info, reply, log).run();
}

}  // namespace mmr::serve
