// `runner serve` streaming, serving several clients at once, and cancelling the requests of clients that went
// away: the real runner binary serving the tiny model on loopback, real clients (cpp-httplib, raw sockets) in
// threads. The expected answers are the server's own non-streamed answers to the same requests sent alone, one
// after another: with greedy decoding a request's reply does not depend on what else the server is doing, with
// the one-at-a-time fallback and with continuous batching alike.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "stream_client.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr;
using namespace mmr::test;

namespace {

fs::path test_dir() { return per_test_dir("mmr_stream_"); }

json streamed(json body, bool include_usage = false) {
  body["stream"] = true;
  if (include_usage) body["stream_options"] = {{"include_usage", true}};
  return body;
}

// Requests that differ in prompt, image, length and stop strings.
std::vector<json> varied_requests(size_t n) {
  const std::vector<std::string> images = {"", kTinyImages + "/wide.png", "", kTinyImages + "/small.png"};
  std::vector<json> out;
  for (size_t i = 0; i < n; ++i) {
    json r = chat_request("Question " + std::to_string(i) + ": what comes next?", 60 + 70 * static_cast<int>(i % 4),
                          images[i % images.size()]);
    if (i % 3 == 2) r["stop"] = json::array({"the", "zz"});
    out.push_back(r);
  }
  return out;
}

// Sends every request from its own thread at the same moment, odd ones streamed; checks each reply against
// `alone`, the non-streamed replies to the same requests sent one at a time.
void expect_concurrent_answers_match(const Server& server, const std::vector<json>& requests,
                                     const std::vector<json>& alone) {
  std::vector<HttpReply> replies(requests.size());
  std::atomic<size_t> ready{0};
  std::vector<std::thread> clients;
  for (size_t i = 0; i < requests.size(); ++i)
    clients.emplace_back([&, i] {
      ++ready;
      while (ready < requests.size()) std::this_thread::yield();  // all send at once
      replies[i] = post_chat(server.port(), i % 2 ? streamed(requests[i]) : requests[i]);
    });
  for (auto& t : clients) t.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string expected = alone[i]["choices"][0]["message"]["content"];
    if (i % 2)
      EXPECT_EQ(check_stream(replies[i], alone[i], false), expected) << "client " << i << " (streamed)";
    else
      EXPECT_EQ(content_of(replies[i]), expected) << "client " << i;
  }
}

std::vector<json> answers_alone(const Server& server, const std::vector<json>& requests) {
  std::vector<json> out;
  for (const auto& r : requests) {
    const HttpReply reply = post_chat(server.port(), r);
    EXPECT_EQ(reply.status, 200) << reply.body;
    out.push_back(json::parse(reply.body));
  }
  return out;
}

}  // namespace

TEST(ServeStream, DeltasConcatenateToTheNonStreamedContent) {
  Server server(test_dir());
  for (const json& request : {chat_request("Hello there", 48), chat_request("What is shown?", 200, kTinyImages + "/wide.png"),
                              chat_request("Hi", 1)}) {
    const json reply = json::parse(post_chat(server.port(), request).body);
    const std::string content = reply["choices"][0]["message"]["content"];
    EXPECT_FALSE(content.empty());
    const HttpReply s = post_chat(server.port(), streamed(request));
    EXPECT_EQ(check_stream(s, reply, false), content);
    EXPECT_NE(parse_event_stream(s.body).at(0)["id"], reply["id"]);  // every request its own id
  }
}

TEST(ServeStream, IncludeUsageAddsTheUsageChunk) {
  Server server(test_dir());
  const json request = chat_request("Describe the picture.", 30, kTinyImages + "/small.png");
  const json reply = json::parse(post_chat(server.port(), request).body);
  EXPECT_GT(reply["usage"]["prompt_tokens"], 576);  // the image's patches are counted
  const HttpReply s = post_chat(server.port(), streamed(request, true));
  EXPECT_EQ(check_stream(s, reply, true), reply["choices"][0]["message"]["content"]);
  EXPECT_EQ(parse_event_stream(s.body).back()["usage"], reply["usage"]);
}

TEST(ServeStream, AStopStringSplitAcrossTokensNeverLeaksIntoADelta) {
  Server server(test_dir());
  const json plain = chat_request("Hello there", 48);
  const std::string full = json::parse(post_chat(server.port(), plain).body)["choices"][0]["message"]["content"];
  // Two letters, a space, two letters: SentencePiece pieces hold a space only at their start, so this text spans
  // at least two tokens. Taken after the reply's start, so some text comes before it.
  auto letter = [&](size_t i) { return i < full.size() && std::isalpha(static_cast<unsigned char>(full[i])); };
  size_t at = std::string::npos;
  for (size_t i = 4; i + 2 < full.size() && at == std::string::npos; ++i)
    if (full[i] == ' ' && letter(i - 2) && letter(i - 1) && letter(i + 1) && letter(i + 2)) at = i - 2;
  ASSERT_NE(at, std::string::npos) << "no 'ab cd' in the tiny model's reply: " << full;
  const std::string stop = full.substr(at, 5);
  const std::string expected = full.substr(0, full.find(stop));
  ASSERT_FALSE(expected.empty());

  json request = plain;
  request["stop"] = json::array({"never-in-it", stop});
  const json reply = json::parse(post_chat(server.port(), request).body);
  EXPECT_EQ(reply["choices"][0]["message"]["content"], expected) << "stop: '" << stop << "'";
  EXPECT_EQ(reply["choices"][0]["finish_reason"], "stop");
  const HttpReply s = post_chat(server.port(), streamed(request));
  const std::string joined = check_stream(s, reply, false);
  EXPECT_EQ(joined, expected);
  EXPECT_EQ(joined.find(stop.substr(0, 3)), expected.find(stop.substr(0, 3))) << "a stop string's start leaked";
}

TEST(ServeStream, ErrorsBeforeTheFirstByteAreJsonWithTheirStatus) {
  Server server(test_dir());
  json bad = streamed(chat_request("x", 4));
  bad["messages"][0]["content"] = json::array(
      {json{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64_encode("not a png")}}}}});
  const HttpReply r = post_chat(server.port(), bad);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(json::parse(r.body)["error"]["type"], "invalid_request_error");
  json unknown_model = streamed(chat_request("x", 4));
  unknown_model["model"] = "gpt-4";
  EXPECT_EQ(post_chat(server.port(), unknown_model).status, 404);
  json bad_option = chat_request("x", 4);
  bad_option["stream_options"] = {{"include_usage", true}};  // without stream: true
  const HttpReply o = post_chat(server.port(), bad_option);
  EXPECT_EQ(o.status, 400);
  EXPECT_NE(o.body.find("'stream_options': only allowed when 'stream' is true"), std::string::npos) << o.body;
}

TEST(ServeConcurrency, ClientsAtOnceGetTheAnswersTheirRequestsGetAlone) {
  Server server(test_dir());
  const std::vector<json> requests = varied_requests(6);
  const std::vector<json> alone = answers_alone(server, requests);
  const auto start = std::chrono::steady_clock::now();
  expect_concurrent_answers_match(server, requests, alone);
  std::cout << "6 clients at once: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s\n";
  EXPECT_EQ(server.count("/v1/chat/completions", 200), 12);
}

TEST(ServeConcurrency, MaxBatchTwoWithFiveClientsStillAnswersThemAll) {
  Server server(test_dir(), {"--max-batch", "2"});
  const std::vector<json> requests = varied_requests(5);
  expect_concurrent_answers_match(server, requests, answers_alone(server, requests));
  EXPECT_EQ(server.count("/v1/chat/completions", 200), 10);

  const ProcessResult bad = run({kRunner, "--plugin-path", kPlugins, "serve", "--model", "llava", "--max-batch", "0"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--max-batch: expected a positive integer"), std::string::npos) << bad.err;
}

TEST(ServeCancel, AClientThatGoesAwayIsCancelledAndOthersAreStillAnswered) {
  // A long reply (thousands of tokens: seconds on the tiny model) that its client leaves early, streamed and not.
  Server server(test_dir(), {"--max-tokens-limit", "8000"}, {}, "info");
  const json other = chat_request("Name a colour.", 40);
  const json alone = json::parse(post_chat(server.port(), other).body);  // chatcmpl-1
  int id = 1;
  std::vector<int> cancelled;
  for (const bool stream : {true, false}) {
    json long_one = chat_request("Tell me a long story.", 8000);
    if (stream) long_one = streamed(long_one);
    // Streamed: gone after the role and one content chunk (or 1 s, when the model sends everything at the end).
    const std::string got = read_then_hang_up(server.port(), long_one, 2, std::chrono::milliseconds(1000));
    cancelled.push_back(++id);
    std::cout << (stream ? "streamed" : "non-streamed") << " client read " << got.size() << " bytes, then hung up\n";
    EXPECT_EQ(got.find("data: [DONE]"), std::string::npos) << "the reply was complete before the client left";
    // Another client, streamed and not, still gets its answer.
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(content_of(post_chat(server.port(), other)), alone["choices"][0]["message"]["content"]);
    EXPECT_EQ(check_stream(post_chat(server.port(), streamed(other)), alone, false),
              alone["choices"][0]["message"]["content"]);
    id += 2;
    std::cout << "the next client's answer took "
              << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
  }
  const ProcessResult r = server.stop();
  EXPECT_EQ(r.status, 0);
  for (const int n : cancelled)
    EXPECT_NE(r.err.find("chatcmpl-" + std::to_string(n) + ": the client went away"), std::string::npos)
        << "no cancellation logged for chatcmpl-" << n << ":\n" << r.err;
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;
}
