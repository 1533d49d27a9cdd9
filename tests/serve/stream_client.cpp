#include "stream_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

#include "core/lib/util/base64.h"
#include "harness.h"

namespace mmr::test {

using nlohmann::json;

json chat_request(const std::string& text, int max_tokens, const std::string& image) {
  json content = text;
  if (!image.empty())
    content = json::array({json{{"type", "image_url"},
                                {"image_url", {{"url", "data:image/png;base64," + base64_encode(slurp(image))}}}},
                           json{{"type", "text"}, {"text", text}}});
  return json{{"model", "llava"},
              {"messages", json::array({json{{"role", "user"}, {"content", content}}})},
              {"max_tokens", max_tokens},
              {"temperature", 0}};
}

HttpReply post_chat(int port, const json& body, const std::string& api_key) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.set_header("Content-Type", "application/json");
  if (!api_key.empty()) req.set_header("Authorization", "Bearer " + api_key);
  req.body = body.dump();
  std::string received;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    received.append(data, n);
    return true;
  };
  const auto res = client.send(req);
  if (!res) throw std::runtime_error("POST /v1/chat/completions: " + httplib::to_string(res.error()));
  return {res->status, res->get_header_value("Content-Type"), received.empty() ? res->body : received};
}

std::string content_of(const HttpReply& reply) {
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.content_type, "application/json");
  const json r = json::parse(reply.body);
  EXPECT_EQ(r["object"], "chat.completion");
  return r["choices"][0]["message"]["content"];
}

std::vector<json> parse_event_stream(const std::string& body) {
  std::vector<json> chunks;
  const std::string prefix = "data: ", done = "data: [DONE]\n\n";
  for (size_t at = 0;;) {
    if (body.compare(at, std::string::npos, done) == 0) return chunks;  // [DONE], and nothing after it
    if (body.compare(at, prefix.size(), prefix) != 0)
      throw std::runtime_error("offset " + std::to_string(at) + ": expected 'data: ', found '" +
                               body.substr(at, 40) + "'");
    const size_t end = body.find("\n\n", at);
    const size_t line_end = body.find('\n', at);
    if (end == std::string::npos || line_end != end)
      throw std::runtime_error("offset " + std::to_string(at) + ": an event is one data line ended by a blank line");
    const json chunk = json::parse(body.substr(at + prefix.size(), end - at - prefix.size()));
    if (!chunk.is_object()) throw std::runtime_error("offset " + std::to_string(at) + ": not a JSON object");
    chunks.push_back(chunk);
    at = end + 2;
  }
}

namespace {

// The choice chunks' checks: role first, then content only, the last one empty with the finish reason.
std::string check_choices(const std::vector<json>& choices, const json& reply) {
  std::string joined;
  for (size_t i = 0; i < choices.size(); ++i) {
    const json& c = choices[i];
    EXPECT_EQ(c["index"], 0);
    if (i + 1 == choices.size()) {
      EXPECT_EQ(c["delta"], json::object()) << "the last chunk carries only the finish reason";
      EXPECT_EQ(c["finish_reason"], reply["choices"][0]["finish_reason"]);
      continue;
    }
    EXPECT_TRUE(c["finish_reason"].is_null()) << c;
    json delta = c["delta"];
    if (i == 0) {
      EXPECT_EQ(delta["role"], "assistant") << "the first delta carries the role";
      delta.erase("role");
    }
    EXPECT_EQ(delta.size(), 1u) << "a delta holds its content only: " << delta;
    EXPECT_TRUE(delta["content"].is_string()) << delta;
    if (delta["content"].is_string()) joined += delta["content"].get<std::string>();
  }
  return joined;
}

}  // namespace

std::string check_stream(const HttpReply& streamed, const json& reply, bool include_usage) {
  EXPECT_EQ(streamed.status, 200) << streamed.body;
  EXPECT_EQ(streamed.content_type, "text/event-stream");
  std::vector<json> chunks;
  try {
    chunks = parse_event_stream(streamed.body);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "the event stream is malformed: " << e.what() << "\n" << streamed.body;
    return "";
  }
  if (chunks.size() < 2) {
    ADD_FAILURE() << "expected a role chunk and a finish chunk at least:\n" << streamed.body;
    return "";
  }
  std::vector<json> choices;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const json& c = chunks[i];
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["id"], chunks[0]["id"]);
    EXPECT_EQ(c["created"], chunks[0]["created"]);
    EXPECT_EQ(c["model"], "llava");
    EXPECT_EQ(c.contains("usage"), include_usage) << c;
    const bool usage_chunk = include_usage && i + 1 == chunks.size();
    if (usage_chunk) {
      EXPECT_EQ(c["choices"], json::array());
      EXPECT_EQ(c["usage"], reply["usage"]);
    } else {
      if (include_usage) {
        EXPECT_TRUE(c["usage"].is_null()) << c;
      }
      EXPECT_EQ(c["choices"].size(), 1u) << c;
      if (c["choices"].size() == 1) choices.push_back(c["choices"][0]);
    }
  }
  EXPECT_EQ(chunks[0]["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  return check_choices(choices, reply);
}

std::string read_then_hang_up(int port, const json& body, int events, std::chrono::milliseconds max_wait) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
  const std::string text = body.dump();
  const std::string request = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\nContent-Length: " +
                              std::to_string(text.size()) + "\r\n\r\n" + text;
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("cannot send the request");
    sent += static_cast<size_t>(n);
  }
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + max_wait;
  auto count = [&] {
    int n = 0;
    for (size_t at = got.find("data: "); at != std::string::npos; at = got.find("data: ", at + 1)) ++n;
    return n;
  };
  while (count() < events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return got;
}

}  // namespace mmr::test
