// A raw TCP client for the server's limit tests: it sends exactly the bytes a test gives (a body that never ends,
// one byte at a time, headers past a limit) and reads what comes back, with deadlines.
#pragma once

#include <chrono>
#include <string>

namespace mmr::test {

class RawConnection {
 public:
  explicit RawConnection(int port);  // connects to 127.0.0.1:port; throws std::runtime_error when it cannot
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // Sends all of `bytes`; false when the connection broke (reset, or closed by the server).
  bool send(const std::string& bytes);
  // Reads until one whole reply (head and its Content-Length body), the end of the connection, or `timeout`.
  std::string read_reply(std::chrono::milliseconds timeout);
  // Everything until the server closes the connection or `timeout` passes (a streamed reply).
  std::string read_until_closed(std::chrono::milliseconds timeout);
  // Whether the server closed the connection (end-of-file or reset) within `timeout`; what was still sent to this
  // end is read and dropped.
  bool closed_within(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::string pending_;  // read past the last reply
};

// The status code of a reply's first line ("HTTP/1.1 413 ..."), 0 when there is none.
int status_of(const std::string& reply);
// The value of a header of a reply (case-insensitive name), "" when absent.
std::string header_of(const std::string& reply, const std::string& name);

}  // namespace mmr::test
