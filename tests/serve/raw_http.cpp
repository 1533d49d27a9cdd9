#include "raw_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace mmr::test {

namespace {

int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

// Milliseconds left until `deadline` (0 when past).
int left_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// The length of the first whole reply in `data` (head + Content-Length body), 0 when it is not all there.
size_t whole_reply_length(const std::string& data) {
  const size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string::npos) return 0;
  const std::string length = header_of(data.substr(0, head_end + 2), "Content-Length");
  const size_t total = head_end + 4 + (length.empty() ? 0 : std::stoul(length));
  return data.size() >= total ? total : 0;
}

}  // namespace

RawConnection::RawConnection(int port) : fd_(connect_loopback(port)) {}

RawConnection::~RawConnection() { close(fd_); }

bool RawConnection::send(const std::string& bytes) {
  for (size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

std::string RawConnection::read_reply(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (const size_t n = whole_reply_length(pending_)) {
      std::string reply = pending_.substr(0, n);
      pending_.erase(0, n);
      return reply;
    }
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left_ms(deadline)) <= 0) break;
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) break;
    pending_.append(buf, static_cast<size_t>(n));
  }
  std::string partial;
  partial.swap(pending_);
  return partial;
}

std::string RawConnection::read_until_closed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string all;
  all.swap(pending_);
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left_ms(deadline)) <= 0) return all;
    char buf[65536];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return all;
    all.append(buf, static_cast<size_t>(n));
  }
}

bool RawConnection::closed_within(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, left_ms(deadline)) <= 0) return false;
    char buf[65536];
    if (recv(fd_, buf, sizeof(buf), 0) <= 0) return true;
  }
}

int status_of(const std::string& reply) {
  if (reply.rfind("HTTP/1.", 0) != 0 || reply.size() < 12) return 0;
  return std::atoi(reply.c_str() + 9);
}

std::string header_of(const std::string& reply, const std::string& name) {
  const size_t head_end = reply.find("\r\n\r\n");
  for (size_t at = reply.find("\r\n"); at != std::string::npos && at < head_end;) {
    const size_t line = at + 2, end = reply.find("\r\n", line), colon = reply.find(':', line);
    const bool named = colon < end && colon - line == name.size() &&
                       strncasecmp(reply.c_str() + line, name.c_str(), name.size()) == 0;
    if (named) {
      size_t v = colon + 1;
      while (v < end && reply[v] == ' ') ++v;
      return reply.substr(v, end - v);
    }
    at = end;
  }
  return "";
}

}  // namespace mmr::test
