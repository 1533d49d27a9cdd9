// The reply to one chat completion: waiting, the JSON reply, the event stream, cancellation. See serve_chat.h.
#include "app/serve_chat.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <optional>

#include "core/lib/util/json_safe.h"

namespace mmr::serve {

using nlohmann::json;

namespace {

// How often a waiting handler looks whether its client is still there.
constexpr std::chrono::milliseconds kPoll{100};

// The numeric address and port of a socket's end, as cpp-httplib writes them into a Request.
bool address_of(int fd, bool peer, std::string& host, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  auto* a = reinterpret_cast<sockaddr*>(&addr);
  if ((peer ? getpeername(fd, a, &len) : getsockname(fd, a, &len)) != 0) return false;
  if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) return false;
  char name[NI_MAXHOST];
  if (getnameinfo(a, len, name, sizeof(name), nullptr, 0, NI_NUMERICHOST) != 0) return false;
  host = name;
  port = ntohs(addr.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(a)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(a)->sin6_port);
  return true;
}

// The socket of the request's connection, -1 when not found. cpp-httplib 0.11.4 does not hand it to handlers,
// so it is looked up among this process's descriptors by its two ends (unique for a TCP connection); it stays
// open while the handler runs.
int connection_socket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    std::string host;
    int port = 0;
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || fd == dirfd(dir)) continue;
    if (!address_of(fd, true, host, port) || port != req.remote_port || host != req.remote_addr) continue;
    if (!address_of(fd, false, host, port) || port != req.local_port || host != req.local_addr) continue;
    found = fd;
    break;
  }
  closedir(dir);
  return found;
}

// Whether the client closed its end of the connection (or it broke). Unread bytes (a pipelined request) do not
// count: only end-of-file or an error does.
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) return true;
  char c;
  return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// Waits until the request has failed or finished, or (`until_started`) the model has taken it; nullopt when the
// client went away first (the request is cancelled).
std::optional<RequestProgress> wait_for(Scheduler& scheduler, const std::shared_ptr<ScheduledRequest>& request,
                                        const httplib::Request& req, bool until_started) {
  const int fd = connection_socket(req);
  RequestProgress p;
  for (;;) {
    p = request->wait(p.version, kPoll);
    if (p.error_status || p.finished || (until_started && p.started)) return p;
    if (client_gone(fd)) {
      scheduler.cancel(request);
      return std::nullopt;
    }
  }
}

std::string error_type(int status) { return status < 500 ? "invalid_request_error" : "server_error"; }

// The event stream of one reply, written by cpp-httplib's content provider: each call waits for the model's next
// progress and sends what is settled of it.
class EventStream {
 public:
  EventStream(Scheduler& scheduler, std::shared_ptr<ScheduledRequest> request, ReplyInfo info,
              std::shared_ptr<spdlog::logger> log)
      : scheduler_(scheduler), request_(std::move(request)), info_(std::move(info)), log_(std::move(log)),
        deltas_(request_->config.stop_strings) {}

  // One call of the provider; false ends the connection (the client is gone).
  bool provide(httplib::DataSink& sink) {
    if (!sink.is_writable()) return client_went_away();
    if (!role_sent_) {
      role_sent_ = true;
      if (!send(sink, chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr))) return client_went_away();
    }
    const RequestProgress p = request_->wait(seen_, kPoll);
    seen_ = p.version;
    if (p.error_status) {
      done_ = true;
      send(sink, error_body(p.error, error_type(p.error_status)));
      sink.done();
      return true;
    }
    if (!p.finished) {
      const std::string delta = deltas_.next(p.text);
      return delta.empty() || send(sink, chunk(json{{"content", delta}}, nullptr)) || client_went_away();
    }
    return finish(sink, p.result);
  }

  // The connection ended (cpp-httplib calls this): a request still going has lost its client.
  void ended() {
    if (!done_ && !request_->cancelled() && !request_->over()) scheduler_.cancel(request_);
  }

 private:
  json chunk(const json& delta, const json& finish) const {
    return completion_chunk(info_.id, info_.model, info_.created, delta, finish, info_.include_usage);
  }
  bool send(httplib::DataSink& sink, const json& data) {
    const std::string event = sse_event(data);
    return sink.write(event.data(), event.size());
  }
  bool client_went_away() {
    scheduler_.cancel(request_);
    return false;
  }
  // The rest of the text, the finish reason, the usage when asked for, then [DONE].
  bool finish(httplib::DataSink& sink, const Generation& g) {
    done_ = true;
    const std::string rest = deltas_.finish(g.text);
    if (!deltas_.consistent())
      log_->warn("serve: {}: the streamed text was not a prefix of the final reply (the tokenizer's decoding of "
                 "more tokens changed earlier text)", info_.id);
    bool ok = rest.empty() || send(sink, chunk(json{{"content", rest}}, nullptr));
    ok = ok && send(sink, chunk(json::object(), finish_reason(g)));
    if (info_.include_usage) ok = ok && send(sink, usage_chunk(g, info_.id, info_.model, info_.created));
    static const std::string kDone = "data: [DONE]\n\n";
    ok = ok && sink.write(kDone.data(), kDone.size());
    if (ok) sink.done();
    return ok;
  }

  Scheduler& scheduler_;
  std::shared_ptr<ScheduledRequest> request_;
  const ReplyInfo info_;
  std::shared_ptr<spdlog::logger> log_;
  DeltaStream deltas_;
  int64_t seen_ = 0;
  bool role_sent_ = false;
  bool done_ = false;
};

}  // namespace

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type) {
  res.status = status;
  res.set_content(dump_text(error_body(message, type)), "application/json");
}

void answer_chat(Scheduler& scheduler, const std::shared_ptr<ScheduledRequest>& request, const ReplyInfo& info,
                 const httplib::Request& req, httplib::Response& res, const std::shared_ptr<spdlog::logger>& log) {
  const std::optional<RequestProgress> p = wait_for(scheduler, request, req, info.stream);
  if (!p) return send_error(res, 499, "the client closed the connection", "invalid_request_error");
  if (p->error_status) return send_error(res, p->error_status, p->error, error_type(p->error_status));
  if (!info.stream) {
    // Generated text may end inside a multi-byte character: U+FFFD for broken UTF-8 instead of an exception.
    res.set_content(chat_completion(p->result, info.id, info.model, info.created)
                        .dump(-1, ' ', false, json::error_handler_t::replace),
                    "application/json");
    return;
  }
  auto stream = std::make_shared<EventStream>(scheduler, request, info, log);
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [stream](size_t, httplib::DataSink& sink) { return stream->provide(sink); },
      [stream](bool) { stream->ended(); });
}

}  // namespace mmr::serve
