// The judge's worker threads against a real chat endpoint on loopback (tests/benchmarks/chat_server.h), the test
// tools/sanitize.sh also runs under ThreadSanitizer: 4 workers share 40 requests while the server fails every
// fifth request once (an exception in its handler: HTTP 500), so retries interleave with replies. Every reply
// must land at its own request's index, and each request be sent once, the failed ones twice.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

#include "core/registry.h"
#include "tests/benchmarks/chat_server.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

TEST(OpenAiCompatibleConcurrency, RepliesLandAtTheirRequestsWhileWorkersRetry) {
  std::mutex mutex;
  std::set<std::string> failed_once;
  test::ChatServer server([&](const nlohmann::json& body) {
    const std::string prompt = test::ChatServer::last_message(body);
    const int i = std::stoi(prompt.substr(prompt.find('#') + 1));
    if (i % 5 == 0) {
      std::lock_guard<std::mutex> lock(mutex);
      if (failed_once.insert(prompt).second) throw std::runtime_error("planned failure");
    }
    return "reply to " + prompt;
  });
  Registry registry;
  registry.load(fs::path(MMR_TEST_PLUGIN_DIR) / "judges" / "libopenai_compatible.so");
  const YAML::Node options = YAML::Load("{base_url: '" + server.base_url() + "', model: m, concurrency: 4, "
                                        "max_retries: 2, backoff_s: 0.001}");
  auto plugin = registry.create(PluginKind::Judge, "openai_compatible", options, "test");
  std::vector<JudgeRequest> requests;
  for (int i = 0; i < 40; ++i) requests.push_back({"You grade.", "answer #" + std::to_string(i), -1, -1, {}});
  const std::vector<JudgeReply> replies = dynamic_cast<Judge&>(*plugin).judge(requests);
  ASSERT_EQ(replies.size(), requests.size());
  for (size_t i = 0; i < replies.size(); ++i) {
    EXPECT_TRUE(replies[i].ok) << i << ": " << replies[i].error;
    EXPECT_EQ(replies[i].text, "reply to " + requests[i].user) << i;
  }
  std::map<std::string, int> sent;
  for (const auto& prompt : server.prompts()) ++sent[prompt];  // every request the server received
  EXPECT_EQ(sent.size(), requests.size());
  for (const auto& [prompt, n] : sent) EXPECT_EQ(n, failed_once.count(prompt) ? 2 : 1) << prompt;
  EXPECT_EQ(failed_once.size(), 8u);
}

}  // namespace
}  // namespace mmr
