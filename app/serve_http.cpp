// Connections of `runner serve`: the acceptor, one Session per connection, Reply. See serve_http.h.
#include "app/serve_http.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <limits>
#include <mutex>
#include <strings.h>
#include <thread>
#include <unordered_map>

#include "core/api/error.h"

namespace mmr::serve::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// After a reply that closes the connection, what the client still sends is read and dropped for at most this
// long (and this much): closing a socket with unread bytes sends a reset, which can destroy the reply in the
// client's receive buffer before it is read (the "lingering close" of other servers).
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr size_t kLingerBytes = 1u << 20;

struct Core {
  Core(const Limits& limits, Handlers handlers, std::shared_ptr<spdlog::logger> log)
      : limits(limits), handlers(std::move(handlers)), log(std::move(log)) {}
  const Limits limits;
  const Handlers handlers;
  std::shared_ptr<spdlog::logger> log;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<bool> stopped{false};
  std::mutex mu;  // guards the members below
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  size_t refused = 0;  // connections refused since the last log line
  std::chrono::steady_clock::time_point last_refusal_log{};
};

std::string Request::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

// One connection: reads a request (its head, then its body), hands it to the handlers, writes the reply they
// give, and reads the next while the connection is kept alive. Everything runs on the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Core> core)
      : stream_(std::move(socket)), fd_(stream_.socket().native_handle()), core_(std::move(core)) {}
  ~Session() {
    std::lock_guard<std::mutex> lock(core_->mu);
    core_->sessions.erase(this);
  }

  void start() {
    {
      std::lock_guard<std::mutex> lock(core_->mu);
      core_->sessions[this] = weak_from_this();
    }
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_head(); });
  }
  // Runs `f` on the connection's strand.
  template <class F>
  void post(F&& f) {
    net::post(stream_.get_executor(), std::forward<F>(f));
  }
  int fd() const { return fd_; }
  Core& core() { return *core_; }

  void send(Response r);
  void send_stream_head(int status, const std::string& content_type,
                        const std::vector<std::pair<std::string, std::string>>& headers,
                        std::shared_ptr<std::promise<bool>> done);
  void send_chunk(std::shared_ptr<std::string> data, std::shared_ptr<std::promise<bool>> done);
  void send_stream_end();
  void close();

 private:
  void read_head();
  void on_head(beast::error_code ec);
  void read_body();
  void on_body(beast::error_code ec);
  void refuse(int status, const std::string& message);
  void refuse_too_large();
  void on_written(beast::error_code ec, bool close);
  void linger();
  void drain();
  void note_head();

  beast::tcp_stream stream_;
  const int fd_;  // the socket's descriptor, for Reply::client_gone from another thread
  std::shared_ptr<Core> core_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;
  bool keep_alive_ = false;
  bool broken_ = false;  // a write failed: the connection is closed
  std::optional<bhttp::response<bhttp::string_body>> response_;
  std::optional<bhttp::response<bhttp::empty_body>> stream_head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer_;
  std::array<char, 4096> discard_{};
  size_t discarded_ = 0;
};

namespace {

std::string error_json(const std::string& message, const std::string& type) {
  // The OpenAI-style error body (openai_chat.h's error_body; this layer knows no JSON library).
  std::string escaped;
  for (const char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
  }
  return fmt::format(R"({{"error": {{"message": "{}", "type": "{}", "code": null}}}})", escaped, type);
}

}  // namespace

// ---- reading ----

void Session::read_head() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(core_->limits.max_header_bytes));
  // A declared length is judged after the key (on_head), a chunked one as it is read. (Not boost::none: Boost
  // 1.74's parser compares the length with the optional, and every length is above an empty one.)
  parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
  request_ = Request{};
  // One deadline for the head and the body together: a client cannot keep the connection by trickling bytes.
  stream_.expires_after(core_->limits.request_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) { self->on_head(ec); });
}

// The request's method, path and headers, as far as they were read.
void Session::note_head() {
  const auto& m = parser_->get();
  request_.method = std::string(m.method_string());
  const std::string target(m.target());
  request_.path = target.substr(0, target.find('?'));
  request_.headers.clear();
  for (const auto& f : m) request_.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
}

void Session::on_head(beast::error_code ec) {
  if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
      ec == net::error::connection_reset || ec == bhttp::error::partial_message)
    return close();  // gone, idle too long, or too slow: nothing to answer (a timed-out socket is closed already)
  if (ec == bhttp::error::header_limit)
    return refuse(431, fmt::format("request headers larger than {} bytes", core_->limits.max_header_bytes));
  if (ec) return refuse(400, "malformed HTTP request: " + ec.message());
  note_head();
  keep_alive_ = parser_->get().keep_alive();
  if (auto early = core_->handlers.check_head(request_)) {
    early->close = true;  // its body is not read: the connection cannot carry another request
    return send(std::move(*early));
  }
  const auto declared = parser_->content_length();
  if (declared && *declared > core_->limits.max_body_bytes) return refuse_too_large();  // before any of the body
  parser_->body_limit(core_->limits.max_body_bytes);
  if (parser_->get()[bhttp::field::expect] == "100-continue") {  // curl waits for it before a large body
    auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, 11);
    return bhttp::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code e, size_t) {
      e ? self->close() : self->read_body();
    });
  }
  read_body();
}

void Session::read_body() {
  if (parser_->is_done()) return on_body({});
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
}

void Session::on_body(beast::error_code ec) {
  if (ec == bhttp::error::body_limit) return refuse_too_large();  // chunked: refused as the limit is passed
  if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == net::error::operation_aborted || ec == net::error::connection_reset)
    return close();
  if (ec) return refuse(400, "malformed HTTP request body: " + ec.message());
  request_.body = std::move(parser_->get().body());
  parser_.reset();
  stream_.expires_never();  // the handler's time is the model's, not the client's
  try {
    core_->handlers.handle(request_, std::make_shared<Reply>(shared_from_this()));
  } catch (const std::exception& e) {  // the handlers answer their own errors; this is a last resort
    core_->log->error("serve: {} {} failed: {}", request_.method, request_.path, e.what());
  }
}

// ---- writing ----

void Session::refuse(int status, const std::string& message) {
  Response r;
  r.status = status;
  r.body = error_json(message, status == 401 ? "authentication_error" : "invalid_request_error");
  r.close = true;
  send(std::move(r));
}

void Session::refuse_too_large() {
  refuse(413, fmt::format("request body larger than {} bytes (see --max-body-bytes)", core_->limits.max_body_bytes));
}

void Session::send(Response r) {
  if (core_->handlers.on_reply && !request_.method.empty()) core_->handlers.on_reply(request_, r.status);
  if (broken_) return;
  response_.emplace(static_cast<bhttp::status>(r.status), 11);
  response_->set(bhttp::field::content_type, r.content_type);
  for (const auto& [k, v] : r.headers) response_->set(k, v);
  response_->body() = std::move(r.body);
  response_->keep_alive(keep_alive_ && !r.close);
  response_->prepare_payload();
  const bool close = !response_->keep_alive();
  stream_.expires_after(core_->limits.request_timeout);
  bhttp::async_write(stream_, *response_, [self = shared_from_this(), close](beast::error_code ec, size_t) {
    self->on_written(ec, close);
  });
}

void Session::on_written(beast::error_code ec, bool close) {
  response_.reset();
  if (ec) return this->close();
  if (close) return linger();
  read_head();
}

// Half-closes, then drops what the client still sends until it closes too, kLingerTime passes or kLingerBytes
// were dropped; then closes.
void Session::linger() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(kLingerTime);
  drain();
}

void Session::drain() {
  stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t n) {
    self->discarded_ += n;
    if (ec || self->discarded_ > kLingerBytes) return self->close();
    self->drain();
  });
}

void Session::send_stream_head(int status, const std::string& content_type,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::shared_ptr<std::promise<bool>> done) {
  if (core_->handlers.on_reply) core_->handlers.on_reply(request_, status);
  if (broken_) return done->set_value(false);
  stream_head_.emplace(static_cast<bhttp::status>(status), 11);
  stream_head_->set(bhttp::field::content_type, content_type);
  for (const auto& [k, v] : headers) stream_head_->set(k, v);
  stream_head_->keep_alive(keep_alive_);
  stream_head_->chunked(true);
  serializer_.emplace(*stream_head_);
  stream_.expires_after(core_->limits.request_timeout);
  bhttp::async_write_header(stream_, *serializer_, [self = shared_from_this(), done](beast::error_code ec, size_t) {
    if (ec) self->close();
    done->set_value(!ec);
  });
}

void Session::send_chunk(std::shared_ptr<std::string> data, std::shared_ptr<std::promise<bool>> done) {
  if (broken_) return done->set_value(false);
  stream_.expires_after(core_->limits.request_timeout);  // a client that stops reading is dropped
  net::async_write(stream_, bhttp::make_chunk(net::buffer(*data)),
                   [self = shared_from_this(), data, done](beast::error_code ec, size_t) {
                     if (ec) self->close();
                     done->set_value(!ec);
                   });
}

void Session::send_stream_end() {
  if (broken_) return;
  stream_.expires_after(core_->limits.request_timeout);
  net::async_write(stream_, bhttp::make_chunk_last(), [self = shared_from_this()](beast::error_code ec, size_t) {
    self->serializer_.reset();
    self->stream_head_.reset();
    self->on_written(ec, !self->keep_alive_);
  });
}

void Session::close() {
  broken_ = true;
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream_.close();
}

// ---- Reply ----

Reply::Reply(std::shared_ptr<Session> session) : session_(std::move(session)) {}

Reply::~Reply() {
  if (answered_) return;
  Response r;
  r.status = 500;
  r.body = error_json("internal error: the request was left without a reply", "server_error");
  respond(std::move(r));
}

void Reply::respond(Response response) {
  answered_ = true;
  session_->post([s = session_, r = std::move(response)]() mutable { s->send(std::move(r)); });
}

namespace {

// Waits for a write posted to the connection; false when it failed or the server stopped before it ran.
bool wait_written(std::future<bool> f, const Core& core) {
  while (f.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready)
    if (core.stopped) return false;
  return f.get();
}

}  // namespace

bool Reply::start_stream(int status, const std::string& content_type,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
  answered_ = true;
  auto done = std::make_shared<std::promise<bool>>();
  session_->post([s = session_, status, content_type, headers, done] {
    s->send_stream_head(status, content_type, headers, done);
  });
  return wait_written(done->get_future(), session_->core());
}

bool Reply::write(std::string data) {
  if (data.empty()) return true;  // an empty chunk would end the stream
  auto done = std::make_shared<std::promise<bool>>();
  session_->post([s = session_, d = std::make_shared<std::string>(std::move(data)), done] { s->send_chunk(d, done); });
  return wait_written(done->get_future(), session_->core());
}

void Reply::end_stream() {
  session_->post([s = session_] { s->send_stream_end(); });
}

bool Reply::client_gone() const {
  pollfd p{session_->fd(), POLLIN | POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) return true;
  char c;
  return (p.revents & POLLIN) && recv(session_->fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

// ---- Server ----

namespace {

// One connection above the limit: a 503 written without waiting (a fresh socket's send buffer takes it), then
// closed. Its request is never read.
void refuse_connection(tcp::socket& socket) {
  static const std::string body = error_json("too many connections; try again later", "server_error");
  static const std::string reply = fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\n{}", body.size(), body);
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(net::buffer(reply), ignored);
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  // What the client sent already is dropped, so the close does not turn into a reset that could take the 503.
  std::array<char, 4096> discard;
  socket.read_some(net::buffer(discard), ignored);
  socket.close(ignored);
}

// A flood of refusals is logged once a second, with their count, not once each.
void log_refusal(Core& core, size_t open) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(core.mu);
  ++core.refused;
  if (now - core.last_refusal_log < std::chrono::seconds(1)) return;
  core.log->warn("serve: {} connections open (--max-connections): {} more refused with 503", open, core.refused);
  core.refused = 0;
  core.last_refusal_log = now;
}

void accept_next(const std::shared_ptr<Core>& core) {
  core->acceptor.async_accept(net::make_strand(core->ioc), [core](beast::error_code ec, tcp::socket socket) {
    if (core->stopped || ec == net::error::operation_aborted || !core->acceptor.is_open()) return;  // closed
    if (ec) {  // out of descriptors, most likely: try again a little later rather than spin
      core->log->warn("serve: accepting a connection failed: {}", ec.message());
      auto timer = std::make_shared<net::steady_timer>(core->ioc, std::chrono::milliseconds(100));
      return timer->async_wait([core, timer](beast::error_code) { accept_next(core); });
    }
    size_t open;
    {
      std::lock_guard<std::mutex> lock(core->mu);
      open = core->sessions.size();
    }
    if (open >= core->limits.max_connections) {
      refuse_connection(socket);
      log_refusal(*core, open);
    } else {
      std::make_shared<Session>(std::move(socket), core)->start();
    }
    accept_next(core);
  });
}

}  // namespace

Server::Server(const Limits& limits, Handlers handlers, std::shared_ptr<spdlog::logger> log)
    : core_(std::make_shared<Core>(limits, std::move(handlers), std::move(log))) {}

Server::~Server() { stop(); }

int Server::bind(const std::string& host, int port) {
  beast::error_code ec;
  const auto address = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  if (!ec) core_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) core_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) core_->acceptor.bind(endpoint, ec);
  if (!ec) core_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw IoError(fmt::format("serve: cannot bind {}:{} ({}: in use, or not an address of this machine)", host, port,
                              ec.message()));
  return core_->acceptor.local_endpoint().port();
}

void Server::start(size_t threads) {
  core_->work.emplace(core_->ioc.get_executor());
  accept_next(core_);
  for (size_t i = 0; i < threads; ++i) core_->threads.emplace_back([core = core_] { core->ioc.run(); });
}

void Server::stop_accepting() {
  net::post(core_->ioc, [core = core_] {
    beast::error_code ignored;
    core->acceptor.close(ignored);
  });
}

void Server::stop() {
  if (core_->stopped.exchange(true)) return;
  stop_accepting();
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard<std::mutex> lock(core_->mu);
    for (auto& [p, weak] : core_->sessions)
      if (auto s = weak.lock()) open.push_back(s);
  }
  for (auto& s : open) s->post([s] { s->close(); });
  open.clear();
  core_->work.reset();  // the threads return once the closed connections' handlers have run
  for (auto& t : core_->threads) t.join();
  core_->threads.clear();
  // Writes posted by request threads after that: they find the connections closed.
  core_->ioc.restart();
  core_->ioc.poll();
}

}  // namespace mmr::serve::http
