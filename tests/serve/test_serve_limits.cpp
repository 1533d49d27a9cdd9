// What a client may do to `runner serve`, on the real server over loopback with raw sockets (raw_http.h) that send
// exactly the bytes of each case: bodies past the limit (declared and chunked), headers past theirs, slow and
// partial requests, more connections than allowed, requests without the key, requests asking for too much, and
// the key kept out of every log. Found by probing: a 200 MiB chunked body got 200 OK past the 32 MiB limit, and
// 8 slow connections blocked the whole server (issue 16).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "raw_http.h"
#include "stream_client.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr;
using namespace mmr::test;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

fs::path test_dir() { return per_test_dir("mmr_limits_"); }

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// A POST's head; `headers` end with CRLF each (the body's framing among them).
std::string post_head(const std::string& headers) {
  return "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + headers +
         "\r\n";
}

std::string chunk(const std::string& data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return size + data + "\r\n";
}

std::string get(const std::string& path) { return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"; }

}  // namespace

TEST(ServeLimits, AChunkedBodyPastTheLimitGets413BeforeItEndsAndIsNotBuffered) {
  Server server(test_dir(), {"--max-body-bytes", "100000"});
  // One chunk of limit + 1 bytes, and no last chunk: 413 without waiting for the end of the body.
  RawConnection one(server.port());
  ASSERT_TRUE(one.send(post_head("Transfer-Encoding: chunked\r\n") + chunk(std::string(100001, 'a'))));
  const std::string reply = one.read_reply(milliseconds(5000));
  EXPECT_EQ(status_of(reply), 413) << reply;
  EXPECT_NE(reply.find("--max-body-bytes"), std::string::npos) << reply;
  EXPECT_EQ(header_of(reply, "Connection"), "close");

  // The probe's 200 MiB in 64 KiB chunks: the server stops reading at the limit, so the sender is cut off after
  // what the sockets' buffers and the short lingering close take, far below 200 MiB.
  RawConnection big(server.port());
  const std::string piece = chunk(std::string(65536, '['));
  size_t sent = 0;
  bool cut_off = !big.send(post_head("Transfer-Encoding: chunked\r\n"));
  while (!cut_off && sent < (200u << 20)) {
    cut_off = !big.send(piece);
    sent += piece.size();
  }
  EXPECT_TRUE(cut_off) << "all 200 MiB were taken";
  EXPECT_LT(sent, 64u << 20) << "bytes taken before the connection was closed";
  std::cout << "chunked 200 MiB body: the connection was closed after " << sent / 1024 << " KiB\n";

  // Under the limit a chunked body is read and answered.
  RawConnection small(server.port());
  const std::string body = json{{"model", "llava"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                                {"max_tokens", 2}}.dump();
  ASSERT_TRUE(small.send(post_head("Transfer-Encoding: chunked\r\n") + chunk(body.substr(0, 10)) +
                         chunk(body.substr(10)) + "0\r\n\r\n"));
  EXPECT_EQ(status_of(small.read_reply(milliseconds(30000))), 200);
}

TEST(ServeLimits, ADeclaredBodyPastTheLimitAndHugeHeadersAreRefusedFromTheHead) {
  Server server(test_dir(), {"--max-body-bytes", "100000", "--max-header-bytes", "8192"});
  RawConnection declared(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(declared.send(post_head("Content-Length: 209715200\r\n")));  // and never a byte of the body
  const std::string reply = declared.read_reply(milliseconds(5000));
  EXPECT_EQ(status_of(reply), 413) << reply;
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(declared.closed_within(milliseconds(3000)));

  RawConnection headers(server.port());
  ASSERT_TRUE(headers.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(9000, 'x') + "\r\n\r\n"));
  EXPECT_EQ(status_of(headers.read_reply(milliseconds(5000))), 431);

  // The server is still there for others.
  RawConnection health(server.port());
  ASSERT_TRUE(health.send(get("/health")));
  EXPECT_EQ(status_of(health.read_reply(milliseconds(5000))), 200);
}

TEST(ServeLimits, SlowClientsDoNotStarveOthersAndAreClosedAtTheRequestDeadline) {
  Server server(test_dir(), {"--request-timeout", "3"});
  // 32 clients sending one byte of a request a second (the probe's 8 blocked the old server), in the head for
  // half of them, in the body for the others.
  std::vector<std::unique_ptr<RawConnection>> slow;
  std::vector<std::string> requests;
  for (int i = 0; i < 32; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server.port()));
    requests.push_back(i % 2 ? get("/health") : post_head("Content-Length: 100\r\n") + std::string(100, ' '));
    if (i % 2 == 0) {
      ASSERT_TRUE(slow.back()->send(requests.back().substr(0, requests.back().size() - 100)));
    }
  }
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    for (size_t k = 0; !done && k < 10; ++k) {
      for (int i = 0; i < 32; ++i) slow[i]->send(requests[i].substr(i % 2 ? k : requests[i].size() - 100 + k, 1));
      for (int t = 0; !done && t < 10; ++t) std::this_thread::sleep_for(milliseconds(100));
    }
  });
  struct Join {  // also when an assertion returns early
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      t.join();
    }
  } join{done, trickle};
  std::this_thread::sleep_for(milliseconds(500));
  // Meanwhile a normal client is answered at once, a chat completion too.
  const auto start = Clock::now();
  RawConnection health(server.port());
  ASSERT_TRUE(health.send(get("/health")));
  EXPECT_EQ(status_of(health.read_reply(milliseconds(5000))), 200);
  EXPECT_LT(seconds_since(start), 1.0) << "GET /health with 32 slow clients open";
  EXPECT_EQ(content_of(post_chat(server.port(), chat_request("Name a colour.", 8))).empty(), false);
  EXPECT_LT(seconds_since(start), 3.0) << "a chat completion with 32 slow clients open";
  // The slow ones are closed at their deadline (3 s), though they keep sending.
  for (int i = 0; i < 32; ++i) EXPECT_TRUE(slow[i]->closed_within(milliseconds(5000))) << "slow client " << i;
  EXPECT_LT(seconds_since(start), 6.0);
}

TEST(ServeLimits, ConnectionsPastTheCapAreRefusedWith503) {
  Server server(test_dir(), {"--max-connections", "8"});
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 8; ++i) idle.push_back(std::make_unique<RawConnection>(server.port()));
  std::this_thread::sleep_for(milliseconds(300));  // accepted by now
  RawConnection extra(server.port());
  const std::string refused = extra.read_reply(milliseconds(3000));
  EXPECT_EQ(status_of(refused), 503) << refused;
  EXPECT_NE(refused.find("too many connections"), std::string::npos);
  idle.clear();
  std::this_thread::sleep_for(milliseconds(300));
  RawConnection again(server.port());
  ASSERT_TRUE(again.send(get("/health")));
  EXPECT_EQ(status_of(again.read_reply(milliseconds(5000))), 200);
}

TEST(ServeLimits, WithoutTheKeyTheAnswerIs401FromTheHeadAndTheConnectionCloses) {
  Server server(test_dir(), {"--api-key-env", "MMR_TEST_LIMITS_KEY"}, {{"MMR_TEST_LIMITS_KEY", "k-limits-7"}});
  // A 100 MiB body is announced and never sent: the 401 comes from the head alone.
  RawConnection announced(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(announced.send(post_head("Content-Length: 104857600\r\nAuthorization: Bearer wrong\r\n")));
  const std::string reply = announced.read_reply(milliseconds(5000));
  EXPECT_EQ(status_of(reply), 401) << reply;
  EXPECT_EQ(header_of(reply, "Connection"), "close");
  EXPECT_LT(seconds_since(start), 2.0);
  EXPECT_TRUE(announced.closed_within(milliseconds(3000)));

  // Found by probing: the body after a 401 was left unread on a kept-alive connection. Here it holds what would
  // be a second request; it is never answered, the connection ends after the 401.
  RawConnection smuggled(server.port());
  const std::string second = get("/v1/models");
  ASSERT_TRUE(smuggled.send(post_head("Content-Length: " + std::to_string(second.size()) + "\r\n") + second));
  EXPECT_EQ(status_of(smuggled.read_reply(milliseconds(5000))), 401);
  const std::string after = smuggled.read_reply(milliseconds(2000));
  EXPECT_EQ(after, "") << "a reply after the 401";
  EXPECT_TRUE(smuggled.closed_within(milliseconds(3000)));

  RawConnection right(server.port());
  ASSERT_TRUE(right.send("GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k-limits-7\r\n\r\n"));
  EXPECT_EQ(status_of(right.read_reply(milliseconds(5000))), 200);
}

TEST(ServeLimits, RequestsAskingTooMuchGet400BeforeTheModelRuns) {
  const fs::path server_dir = test_dir();
  Server server(server_dir, {"--max-messages", "3", "--max-images", "1", "--max-tokens-limit", "64",
                                "--default-max-tokens", "16"});
  json many = chat_request("hi", 4);
  for (int i = 0; i < 3; ++i)
    many["messages"].push_back(json{{"role", i % 2 ? "user" : "assistant"}, {"content", "x"}});
  const HttpReply m = post_chat(server.port(), many);
  EXPECT_EQ(m.status, 400);
  EXPECT_NE(m.body.find("4 messages, more than this server takes in one request (3)"), std::string::npos) << m.body;

  json images = chat_request("hi", 4, kTinyImages + "/small.png");
  images["messages"][0]["content"].push_back(images["messages"][0]["content"][0]);
  const HttpReply i = post_chat(server.port(), images);
  EXPECT_EQ(i.status, 400);
  EXPECT_NE(i.body.find("'messages': 2 images, more than this server takes in one request (1)"), std::string::npos) << i.body;

  const HttpReply t = post_chat(server.port(), chat_request("hi", 65));
  EXPECT_EQ(t.status, 400);
  EXPECT_NE(t.body.find("'max_tokens': expected an integer in [1, 64]"), std::string::npos) << t.body;

  // A 33-byte PNG whose header claims 13000 x 13000 pixels (found by probing: a small file of that size decoded
  // for 6.6 s with the model waiting): refused from its header, past --max-image-pixels.
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x32\xc8\0\0\x32\xc8\x08\x02\0\0\0\0\0\0\0", 33);
  const fs::path big = server_dir / "big.png";
  fs::create_directories(server_dir);
  std::ofstream(big, std::ios::binary) << png;
  const HttpReply b = post_chat(server.port(), chat_request("hi", 4, big.string()));
  EXPECT_EQ(b.status, 400);
  EXPECT_NE(b.body.find("the image is 13000 x 13000 pixels, more than this server takes (50000000 pixels"),
            std::string::npos) << b.body;

  EXPECT_EQ(server.count("/v1/chat/completions", 400), 4);
}

// Found by review: a prompt past the model's max_length was silently cut, and a reply could run past the positions
// the model knows (the fixture's 2048). The first is a 400 now; the second ends at the context.
TEST(ServeLimits, APromptPastMaxLengthGets400AndARepliesEndsAtTheContext) {
  Server server(test_dir(), {});
  std::string words;
  for (int i = 0; i < 2100; ++i) words += " seven";
  const HttpReply long_prompt = post_chat(server.port(), chat_request(words, 4));
  EXPECT_EQ(long_prompt.status, 400);
  EXPECT_NE(long_prompt.body.find("more than this model takes (2048: its max_length)"), std::string::npos)
      << long_prompt.body;
  const HttpReply past = post_chat(server.port(), chat_request("hi", 4000));
  ASSERT_EQ(past.status, 200) << past.body;
  const json usage = json::parse(past.body).at("usage");
  EXPECT_LE(usage.at("prompt_tokens").get<int>() + usage.at("completion_tokens").get<int>(), 2048) << past.body;
}

TEST(ServeLimits, TheKeyIsInNoLogWhateverTheRequests) {
  const fs::path dir = test_dir();
  const std::string key = "sk-limits-0123456789abcdef";
  Server server(dir, {"--api-key-env", "MMR_TEST_LIMITS_KEY"}, {{"MMR_TEST_LIMITS_KEY", key}}, "debug");
  for (const std::string& token : {key, key.substr(0, 10), key + "x", std::string("wrong")}) {
    const HttpReply r = post_chat(server.port(), chat_request("hi", 4), token);
    EXPECT_EQ(r.status, token == key ? 200 : 401) << r.body;
    EXPECT_EQ(r.body.find(key), std::string::npos) << "the reply holds the key";
  }
  RawConnection raw(server.port());  // the key in a header the server does not look at
  ASSERT_TRUE(raw.send("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Key: " + key + "\r\n\r\n"));
  EXPECT_EQ(status_of(raw.read_reply(milliseconds(5000))), 401);
  const ProcessResult r = server.stop();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("POST /v1/chat/completions -> 401"), std::string::npos) << "debug logging is on:\n" << r.err;
  EXPECT_EQ(r.out.find(key), std::string::npos);
  EXPECT_EQ(r.err.find(key), std::string::npos);
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    EXPECT_EQ(slurp(entry.path().string()).find(key), std::string::npos) << entry.path();
  }
  fs::remove_all(dir);
}

// ---- the load test (tools/bench/serve_limits.py), bounded: a few seconds ----

namespace {

json load_test(const Server& server, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {find_program("python3"), std::string(MMR_TEST_DATA_DIR) + "/../../tools/bench/serve_limits.py",
                                   "--port", std::to_string(server.port())};
  argv.insert(argv.end(), args.begin(), args.end());
  const ProcessResult r = run(argv);
  EXPECT_EQ(r.status, 0) << r.err;
  std::cout << "serve_limits.py " << args.size() << " args: " << r.out;
  return json::parse(r.out);
}

}  // namespace

TEST(ServeLoad, NormalClientsAreServedWhileSlowOnesAreClosedAtTheirDeadline) {
  Server server(test_dir(), {"--request-timeout", "2"});
  const json r = load_test(server, {"--clients", "4", "--requests", "2", "--slow", "32", "--seconds", "8"});
  EXPECT_EQ(r["served"], 8) << r.dump();
  EXPECT_TRUE(r["refused"].empty()) << r.dump();
  EXPECT_LT(r["latency_max_s"].get<double>(), 2.0) << r.dump();
  EXPECT_EQ(r["slow_outcomes"], json({{"closed by the server", 32}})) << r.dump();
  EXPECT_GE(r["slow_closed_median_s"].get<double>(), 1.5);
  EXPECT_LT(r["slow_closed_median_s"].get<double>(), 4.0);
}

TEST(ServeLoad, SlowClientsPastTheConnectionCapAreRefusedWith503) {
  Server server(test_dir(), {"--request-timeout", "2", "--max-connections", "16"});
  const json r = load_test(server, {"--clients", "0", "--slow", "24", "--seconds", "8"});
  EXPECT_EQ(r["slow_outcomes"], json({{"closed by the server", 16}, {"refused with 503", 8}})) << r.dump();
}

TEST(ServeStop, SigtermEndsTheRequestsInFlightWith503AndExitsZero) {
  Server server(test_dir(), {"--max-tokens-limit", "8000"});
  const std::string plain = chat_request("Tell me a long story.", 8000).dump();
  json streamed_body = chat_request("Tell me a long story.", 8000);
  streamed_body["stream"] = true;
  const std::string streamed = streamed_body.dump();
  RawConnection a(server.port()), b(server.port());
  ASSERT_TRUE(a.send(post_head("Content-Length: " + std::to_string(plain.size()) + "\r\n") + plain));
  ASSERT_TRUE(b.send(post_head("Content-Length: " + std::to_string(streamed.size()) + "\r\n") + streamed));
  std::this_thread::sleep_for(milliseconds(1000));  // both are generating (8000 tokens take seconds)
  const auto start = Clock::now();
  const ProcessResult r = server.stop();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_LT(seconds_since(start), 10.0);
  const std::string reply = a.read_reply(milliseconds(3000));
  EXPECT_EQ(status_of(reply), 503) << reply;
  EXPECT_NE(reply.find("the server is shutting down"), std::string::npos) << reply;
  const std::string stream = b.read_until_closed(milliseconds(3000));
  EXPECT_EQ(status_of(stream), 200) << stream;
  EXPECT_NE(stream.find("data: {\"error\":{\"code\":null,\"message\":\"the server is shutting down\""),
            std::string::npos) << stream;
}
