// The chat page of `runner serve` (GET /) used the way a person uses it: headless Chromium (driven over the
// DevTools protocol, tests/support/cdp.h) loads it from the real server, a fixture image is chosen in the file
// input, the question typed, Send clicked; the answer streamed into the page must equal the server's own
// non-streamed answer to the same conversation. Then a second turn, the stop button, and a screenshot kept as
// the test's artifact. Skipped where Chromium is not installed (tools/setup.sh installs it).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "app/openai_chat.h"
#include "cdp.h"
#include "harness.h"
#include "stream_client.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr;
using namespace mmr::test;
using std::chrono::seconds;

namespace {

constexpr const char* kLastAnswer = "document.querySelector('#messages .message.assistant:last-child')";

// Types `text` into the field `selector` as a person does: click it, select what is there, type over it.
void fill(Chromium& page, const std::string& selector, const std::string& text) {
  page.click(selector);
  page.select_all();
  page.type(text);
}

// Types a question, clicks Send and waits until the answer has stopped streaming; returns its state and text.
std::pair<std::string, std::string> ask(Chromium& page, const std::string& question) {
  fill(page, "#prompt", question);
  page.click("#send");
  const std::string state = page.wait_until(std::string("(() => { const m = ") + kLastAnswer +
                                                "; return m && m.dataset.state !== 'streaming' && m.dataset.state; })()",
                                            seconds(60));
  return {state, page.evaluate(std::string(kLastAnswer) + ".querySelector('.text').textContent")};
}

}  // namespace

TEST(ChatPage, APersonUploadsAnImageAsksTwiceAndSeesTheServersAnswers) {
  const std::string program = find_program("chromium");
  if (program.empty()) GTEST_SKIP() << "chromium is not installed (tools/setup.sh installs it)";
  const fs::path dir = fs::temp_directory_path() / ("mmr_chat_page_" + std::to_string(getpid()));
  const std::string key = "page-key-1";
  Server server(dir / "server", {"--api-key-env", "MMR_TEST_PAGE_KEY"}, {{"MMR_TEST_PAGE_KEY", key}}, "info");
  Chromium page(program, dir / "chromium", 1100, 800);
  page.open("http://127.0.0.1:" + std::to_string(server.port()) + "/");
  EXPECT_EQ(page.evaluate("document.title"), "runner serve — chat");

  // The page needs no key, its requests do: without one the server's 401 message is shown.
  fill(page, "#max-tokens", "24");
  fill(page, "#temperature", "0");
  const auto refused = ask(page, "Hello?");
  EXPECT_EQ(refused.first, "error");
  EXPECT_NE(page.evaluate(std::string(kLastAnswer) + ".textContent").get<std::string>().find("missing bearer token"),
            std::string::npos);
  page.click("#clear");
  EXPECT_EQ(page.evaluate("document.querySelectorAll('#messages .message').length"), 0);
  fill(page, "#api-key", key);

  // An image chosen in the file input goes with the first turn, as a data: URL.
  const std::string image = kTinyImages + "/wide.png";
  page.choose_file("#image-input", image);
  page.wait_until("(document.getElementById('image-preview').getAttribute('src') || '').startsWith('data:image/png')",
                  seconds(10));
  const auto first = ask(page, "What is in the picture?");
  ASSERT_EQ(first.first, "done");
  json request = chat_request("What is in the picture?", 24, image);
  request["top_p"] = 0.7;  // the page's default (greedy decoding does not use it)
  const std::string expected_first = content_of(post_chat(server.port(), request, key));
  EXPECT_FALSE(expected_first.empty());
  EXPECT_EQ(first.second, expected_first);

  // A second turn: the page sends the whole conversation again.
  const auto second = ask(page, "And its colour?");
  ASSERT_EQ(second.first, "done");
  request["messages"].push_back({{"role", "assistant"}, {"content", expected_first}});
  request["messages"].push_back({{"role", "user"}, {"content", "And its colour?"}});
  EXPECT_EQ(second.second, content_of(post_chat(server.port(), request, key)));
  EXPECT_EQ(page.evaluate("[...document.querySelectorAll('#messages .message')].map(m => m.dataset.role).join()"),
            "user,assistant,user,assistant");
  EXPECT_EQ(page.evaluate("document.getElementById('status').textContent"), "ready");

  // The screenshot of the conversation is the test's artifact.
  const fs::path artifacts = fs::path(MMR_TEST_BINARY_DIR) / "test-artifacts" / "chat_page";
  fs::create_directories(artifacts);
  const fs::path png = artifacts / "conversation.png";
  const std::string shot = base64_decode(page.screenshot_base64(), Base64Rules::kStrict);
  std::ofstream(png, std::ios::binary) << shot;
  ASSERT_EQ(shot.substr(0, 8), "\x89PNG\r\n\x1a\n");
  std::cout << "screenshot: " << png.string() << "\n";

  // Stop aborts a long answer: the page is ready again and the server drops the request.
  fill(page, "#max-tokens", "4000");
  fill(page, "#prompt", "Now tell me everything.");
  page.click("#send");
  page.wait_until("document.getElementById('stop').disabled === false", seconds(10));
  page.click("#stop");
  page.wait_until(std::string(kLastAnswer) + ".dataset.state === 'stopped'", seconds(10));
  EXPECT_EQ(page.evaluate("document.getElementById('send').disabled"), false);
  const ProcessResult stopped = server.stop();
  EXPECT_NE(stopped.err.find("the client went away"), std::string::npos) << stopped.err;
  fs::remove_all(dir);
}
