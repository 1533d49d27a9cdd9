// Clients of `runner serve` for the streaming, concurrency and page tests: a chat request body, a POST whose
// reply is read as it streams, a strict parser of the event stream, and a client that hangs up mid-reply.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace mmr::test {

// A chat request: one user turn (with the image as a data: URL when given), greedy, max_tokens.
nlohmann::json chat_request(const std::string& text, int max_tokens, const std::string& image = "");

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// POST /v1/chat/completions, the reply's body read as it arrives (as a streaming client reads it).
HttpReply post_chat(int port, const nlohmann::json& body, const std::string& api_key = "");

// The content of a non-streamed reply (checks status 200 and the shape on the way).
std::string content_of(const HttpReply& reply);

// An event stream parsed strictly: only `data: <JSON object>\n\n` events, then `data: [DONE]\n\n` and nothing
// after it. Throws std::runtime_error naming the offset of the first violation.
std::vector<nlohmann::json> parse_event_stream(const std::string& body);

// Checks a streamed reply against the non-streamed reply to the same request (same id/created/model in every
// chunk, the role first, content deltas, a last chunk with an empty delta and the finish reason, the usage chunk
// when asked for); returns the deltas joined. Failures are gtest failures.
std::string check_stream(const HttpReply& streamed, const nlohmann::json& non_streamed, bool include_usage);

// Sends a request on a raw socket, reads until the reply holds `events` server-sent events or `max_wait` passed,
// then closes the connection without reading the rest; returns what it read.
std::string read_then_hang_up(int port, const nlohmann::json& body, int events, std::chrono::milliseconds max_wait);

}  // namespace mmr::test
