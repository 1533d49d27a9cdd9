// The HTTP/1.1 side of `runner serve`, on Boost.Beast and Boost.Asio: connections and their limits. It knows
// nothing of chat: serve_routes.h gives it the two decisions it needs (after a request's headers, and on the
// whole request).
//
// Every connection is read asynchronously by a few I/O threads, so a slow or idle client costs a socket and a
// few kilobytes, never a thread. What a client may do is bounded:
//  - a request's headers and body must arrive within `request_timeout`, counted from when the connection waits
//    for it (a client sending one byte a second, or an idle keep-alive connection, is closed then);
//  - headers above `max_header_bytes` get 431; a body above `max_body_bytes` gets 413 as soon as the limit is
//    passed, whether its length was declared (Content-Length: before the body is read) or not (chunked: while
//    it is read, never buffering past the limit);
//  - at most `max_connections` connections are open; one more gets 503 and is closed;
//  - a request refused from its headers (401, 413) is answered with "Connection: close" without reading its
//    body; the connection then waits a little for the client to read that answer (see Session::linger).
// A reply may come later and from another thread (Reply): the chat completions wait for the model on threads of
// their own.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mmr::serve::http {

struct Limits {
  size_t max_body_bytes = 32u << 20;
  size_t max_header_bytes = 16u << 10;
  std::chrono::milliseconds request_timeout{30000};  // headers + body of one request; also each reply write
  size_t max_connections = 512;
};

// One request as the handlers see it. The body is empty in the headers-only decision (Handlers::check_head).
struct Request {
  std::string method;
  std::string path;  // the target without its query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The value of header `name` (case-insensitive), "" when absent.
  std::string header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close = false;  // "Connection: close", then the connection ends
};

class Session;

// The reply to one request, usable from any thread: one respond(), or start_stream(), write()s, end_stream().
// The blocking calls return false once the client is gone (or the write timed out).
class Reply {
 public:
  explicit Reply(std::shared_ptr<Session> session);
  ~Reply();  // a request left without a reply gets a 500
  Reply(const Reply&) = delete;
  Reply& operator=(const Reply&) = delete;

  void respond(Response response);
  // The head of a chunked reply (Transfer-Encoding: chunked); waits until it is written.
  bool start_stream(int status, const std::string& content_type,
                    const std::vector<std::pair<std::string, std::string>>& headers);
  bool write(std::string data);  // one chunk; waits until it is written
  void end_stream();
  // Whether the client closed its end of the connection (or it broke), asked of the connection's socket without
  // reading from it: bytes of a next request do not count, only end-of-file or an error does.
  bool client_gone() const;
  bool answered() const { return answered_; }

 private:
  std::shared_ptr<Session> session_;
  bool answered_ = false;
};

struct Handlers {
  // After the headers, before the body is read: a response sent at once (and the connection closed, the body
  // unread), or nullopt to read the body.
  std::function<std::optional<Response>(const Request& head)> check_head;
  // The whole request, on an I/O thread: answer through the Reply now, or hand it to a thread that answers later.
  std::function<void(const Request& request, std::shared_ptr<Reply> reply)> handle;
  // Each reply's status as its head is about to be written (and 499 for a client gone before it): the request
  // log. `request` has its body (empty when the body was not read).
  std::function<void(const Request& request, int status)> on_reply;
};

struct Core;  // the I/O context, the acceptor and the open connections (serve_http.cpp)

class Server {
 public:
  Server(const Limits& limits, Handlers handlers, std::shared_ptr<spdlog::logger> log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port (0: any free port); returns the port. Throws IoError when it cannot.
  int bind(const std::string& host, int port);
  // Accepts and serves on `threads` I/O threads until stop().
  void start(size_t threads);
  // Stops accepting; connections go on until stop().
  void stop_accepting();
  // Ends every connection and joins the I/O threads.
  void stop();

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace mmr::serve::http
