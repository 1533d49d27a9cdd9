// `runner serve` and the judges over real HTTP on loopback: the server is the real runner binary serving the tiny
// model (tests/data/tiny-llava), requests are counted by the server's own request log (--log-requests), and the
// expected replies come from the same model generating directly in this process.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <webp/encode.h>
#include <webp/types.h>

#include "core/api/plugin_api.h"
#include "core/lib/image/image.h"
#include "harness.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr;
using namespace mmr::test;

namespace {

fs::path test_dir() { return per_test_dir("mmr_serve_"); }

json chat_body(const std::string& text, int max_tokens) {
  return json{{"model", "llava"}, {"messages", json::array({json{{"role", "user"}, {"content", text}}})},
              {"max_tokens", max_tokens}, {"temperature", 0}};
}

// One server and one direct model for the tests that need no special server flags.
class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const fs::path dir = fs::temp_directory_path() / ("mmr_serve_shared_" + std::to_string(getpid()));
    fs::create_directories(dir / "tmp");
    // What servers of this user left behind: one whose pid is gone (removed at start), one of a live process (kept).
    fs::create_directories(dir / "tmp" / "mmr-serve-999999999-AbCdEf" / "old");
    fs::create_directories(dir / "tmp" / ("mmr-serve-" + std::to_string(getpid()) + "-AbCdEf"));
    server_ = new Server(dir, {"--allowed-media-dir", kTinyImages}, {{"TMPDIR", (dir / "tmp").string()}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete direct_;
    fs::remove_all(fs::temp_directory_path() / ("mmr_serve_shared_" + std::to_string(getpid())));
  }
  httplib::Result post(const json& body) {
    httplib::Client client("127.0.0.1", server_->port());
    client.set_read_timeout(60, 0);
    return client.Post("/v1/chat/completions", body.dump(), "application/json");
  }
  // Loaded on first use: ctest runs each test in its own process, and most tests here need no direct model.
  static DirectModel& direct() {
    if (!direct_) direct_ = new DirectModel();
    return *direct_;
  }
  static Server* server_;
  static DirectModel* direct_;
};
Server* Serve::server_ = nullptr;
DirectModel* Serve::direct_ = nullptr;

}  // namespace

TEST_F(Serve, ImageRequestGetsTheReplyTheModelGeneratesDirectly) {
  const std::string image = kTinyImages + "/wide.png";
  const json body = {
      {"model", "llava"},
      {"messages", json::array({json{{"role", "user"},
                                     {"content", json::array({
                                         json{{"type", "image_url"},
                                              {"image_url", {{"url", "data:image/png;base64," + base64_encode(slurp(image))}}}},
                                         json{{"type", "text"}, {"text", "What is shown in the picture?"}}})}}})},
      {"max_tokens", 12},
      {"temperature", 0}};
  auto res = post(body);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const json reply = json::parse(res->body);

  GenerationConfig config;
  config.max_new_tokens = 12;
  const Generation expected =
      direct().generate(ChatSample{{{"human", "<image>\nWhat is shown in the picture?"}}, {image}}, config);
  EXPECT_EQ(reply["object"], "chat.completion");
  EXPECT_EQ(reply["model"], "llava");
  EXPECT_EQ(reply["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(reply["choices"][0]["message"]["content"], expected.text);
  EXPECT_EQ(reply["choices"][0]["finish_reason"], expected.finish_reason == "length" ? "length" : "stop");
  EXPECT_EQ(reply["usage"]["completion_tokens"], expected.token_ids.size());
  EXPECT_EQ(reply["usage"]["prompt_tokens"], expected.prompt_tokens);
  // 576 image patches + the text of the vicuna_v1 prompt.
  EXPECT_GT(expected.prompt_tokens, 576);
  // The decoded image was written to a per-request folder and removed after the reply. The server's folder has a
  // name nobody could guess ahead (mkdtemp) and only its owner may enter it.
  const fs::path tmp = fs::temp_directory_path() / ("mmr_serve_shared_" + std::to_string(getpid())) / "tmp";
  const std::string mine = "mmr-serve-" + std::to_string(server_->pid()) + "-";  // + mkdtemp's 6 characters
  std::vector<fs::path> temps;
  for (const auto& e : fs::directory_iterator(tmp))
    if (e.path().filename().string().rfind(mine, 0) == 0) temps.push_back(e.path());
  ASSERT_EQ(temps.size(), 1u);
  ASSERT_TRUE(fs::is_directory(temps[0]));
  EXPECT_TRUE(fs::is_empty(temps[0]));
  EXPECT_EQ(temps[0].filename().string().size(), mine.size() + 6);
  EXPECT_EQ(fs::status(temps[0]).permissions() & (fs::perms::group_all | fs::perms::others_all), fs::perms::none);
}

// Found by probing: a server killed with SIGKILL left its folder in the temp dir for ever. A server starting removes
// the folders of this user's servers whose pid is no longer running, and no other.
TEST_F(Serve, FoldersOfServersThatDiedAreRemovedAtStart) {
  const fs::path tmp = fs::temp_directory_path() / ("mmr_serve_shared_" + std::to_string(getpid())) / "tmp";
  EXPECT_FALSE(fs::exists(tmp / "mmr-serve-999999999-AbCdEf"));
  EXPECT_TRUE(fs::exists(tmp / ("mmr-serve-" + std::to_string(getpid()) + "-AbCdEf")));
}

TEST_F(Serve, WebpDataUrlGetsTheReplyTheModelGivesForTheSamePixelsAsPng) {
  // A lossless WebP copy of wide.png (made here with libwebp's encoder) holds the PNG's pixels, so the server must
  // accept it and reply as the model does for the PNG (before, data:image/webp was advertised but got a 400).
  const std::string png = kTinyImages + "/wide.png";
  const image::RgbImage rgb = image::load_rgb(png);
  uint8_t* encoded = nullptr;
  const size_t size = WebPEncodeLosslessRGB(rgb.pixels.data(), rgb.width, rgb.height, rgb.width * 3, &encoded);
  ASSERT_GT(size, 0u);
  const std::string webp(reinterpret_cast<const char*>(encoded), size);
  WebPFree(encoded);
  json body = chat_body("What is shown in the picture?", 8);
  body["messages"][0]["content"] = json::array(
      {json{{"type", "image_url"}, {"image_url", {{"url", "data:image/webp;base64," + base64_encode(webp)}}}},
       json{{"type", "text"}, {"text", "What is shown in the picture?"}}});
  auto res = post(body);
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const json reply = json::parse(res->body);
  GenerationConfig config;
  config.max_new_tokens = 8;
  const Generation expected =
      direct().generate(ChatSample{{{"human", "<image>\nWhat is shown in the picture?"}}, {png}}, config);
  EXPECT_EQ(reply["choices"][0]["message"]["content"], expected.text);
  EXPECT_EQ(reply["usage"]["prompt_tokens"], expected.prompt_tokens);
}

TEST_F(Serve, CurlGetsAChatCompletionForAnImage) {
  // The real curl (tools/setup.sh installs it), a raw JSON body, the image as a data: URL; then a second
  // conversation whose image is a file:// URL on the server's machine.
  ASSERT_TRUE(fs::exists("/usr/bin/curl")) << "this test runs /usr/bin/curl; tools/setup.sh installs it";
  const fs::path body = fs::temp_directory_path() / ("mmr_serve_curl_" + std::to_string(getpid()) + ".json");
  GenerationConfig config;
  config.max_new_tokens = 6;
  for (const std::string& image : {kTinyImages + "/small.png", kTinyImages + "/tall.jpg"}) {
    const std::string url = image.substr(image.size() - 4) == ".png"
                                ? "data:image/png;base64," + base64_encode(slurp(image))
                                : "file://" + image;
    std::ofstream(body) << R"({"model": "llava", "max_tokens": 6, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": ")" << url << R"("}}, {"type": "text", "text": "Describe it."}]}]})";
    const ProcessResult r = run({"/usr/bin/curl", "-sS", "-H", "Content-Type: application/json", "--data-binary",
                                 "@" + body.string(), server_->base_url() + "/chat/completions"});
    ASSERT_EQ(r.status, 0) << r.err;
    const json reply = json::parse(r.out);
    const Generation expected = direct().generate(ChatSample{{{"human", "<image>\nDescribe it."}}, {image}}, config);
    EXPECT_EQ(reply["choices"][0]["message"]["content"], expected.text) << r.out;
    EXPECT_EQ(reply["usage"]["completion_tokens"], expected.token_ids.size());
    EXPECT_EQ(reply["usage"]["prompt_tokens"], expected.prompt_tokens);
  }
  fs::remove(body);
}

TEST_F(Serve, TwoImagesInOneMessageAreRefusedAsLlavasTemplateHoldsOnePerTurn) {
  // LLaVA's preprocessing moves a turn's <image> to its front, once: two images in one message cannot be encoded.
  const std::string url = "data:image/png;base64," + base64_encode(slurp(kTinyImages + "/small.png"));
  json body = chat_body("Compare them.", 4);
  body["messages"][0]["content"] = json::array({json{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                json{{"type", "image_url"}, {"image_url", {{"url", url}}}},
                                                json{{"type", "text"}, {"text", "Compare them."}}});
  auto res = post(body);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("placeholder"), std::string::npos) << res->body;
}

TEST_F(Serve, ModelsEndpointListsTheServedModel) {
  httplib::Client client("127.0.0.1", server_->port());
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto res = client.Get("/v1/models");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  const json models = json::parse(res->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], "llava");
}

TEST_F(Serve, MalformedRequestsGet400WithAMessage) {
  httplib::Client client("127.0.0.1", server_->port());
  auto not_json = client.Post("/v1/chat/completions", "{\"messages\": [", "application/json");
  ASSERT_TRUE(not_json);
  EXPECT_EQ(not_json->status, 400);
  EXPECT_NE(json::parse(not_json->body)["error"]["message"].get<std::string>().find("not valid JSON"), std::string::npos);

  auto no_messages = post(json{{"model", "llava"}});
  ASSERT_TRUE(no_messages);
  EXPECT_EQ(no_messages->status, 400);
  EXPECT_EQ(json::parse(no_messages->body)["error"]["type"], "invalid_request_error");
  EXPECT_NE(json::parse(no_messages->body)["error"]["message"].get<std::string>().find("missing 'messages'"),
            std::string::npos);

  json bad_image = chat_body("x", 4);
  bad_image["messages"][0]["content"] = json::array({json{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,!!!"}}}}});
  auto bad = post(bad_image);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(json::parse(bad->body)["error"]["message"].get<std::string>().find("messages[0].content[0].image_url.url: base64"),
            std::string::npos) << bad->body;

  // Found by probing: a value nested 100,000 deep killed the server (the 400 message dumped it recursively).
  for (const char* field : {"temperature", "max_tokens", "stop"}) {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    const std::string text = "{\"model\": \"llava\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"" +
                             std::string(field) + "\": " + deep + "}";
    auto nested = client.Post("/v1/chat/completions", text, "application/json");
    ASSERT_TRUE(nested) << field << ": the server did not answer";
    EXPECT_EQ(nested->status, 400) << field;
    EXPECT_NE(nested->body.find("nested deeper than 256 levels"), std::string::npos) << nested->body;
  }
  ASSERT_TRUE(post(chat_body("still up?", 2)));

  // Bytes that are not an image: the client's fault, 400 (their header is read before the model runs).
  json not_png = chat_body("x", 4);
  not_png["messages"][0]["content"] = json::array({json{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64," + base64_encode("not a png")}}}}});
  auto undecodable = post(not_png);
  ASSERT_TRUE(undecodable);
  EXPECT_EQ(undecodable->status, 400) << undecodable->body;
}

TEST_F(Serve, UnknownRouteAndUnknownModelGet404) {
  httplib::Client client("127.0.0.1", server_->port());
  auto route = client.Get("/v1/nothing");
  ASSERT_TRUE(route);
  EXPECT_EQ(route->status, 404);
  EXPECT_NE(json::parse(route->body)["error"]["message"].get<std::string>().find("no route GET /v1/nothing"),
            std::string::npos);
  json body = chat_body("hi", 2);
  body["model"] = "gpt-4";
  auto model = post(body);
  ASSERT_TRUE(model);
  EXPECT_EQ(model->status, 404);
  EXPECT_NE(json::parse(model->body)["error"]["message"].get<std::string>().find("serves 'llava'"), std::string::npos);
}

TEST(ServeAuth, BearerTokenIsRequiredWhenConfigured) {
  Server server(test_dir(), {"--api-key-env", "MMR_TEST_SERVE_KEY"}, {{"MMR_TEST_SERVE_KEY", "s3cret"}});
  httplib::Client client("127.0.0.1", server.port());
  const std::string body = chat_body("hi", 2).dump();
  auto none = client.Post("/v1/chat/completions", body, "application/json");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(json::parse(none->body)["error"]["type"], "authentication_error");
  auto wrong = client.Post("/v1/chat/completions", {{"Authorization", "Bearer s3cre7"}}, body, "application/json");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 401);
  auto health = client.Get("/health");  // a load balancer's probe carries no key
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
  auto right = client.Post("/v1/chat/completions", {{"Authorization", "Bearer s3cret"}}, body, "application/json");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 200) << right->body;
  // The key never reaches the log or the output.
  const ProcessResult r = server.stop();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("s3cret"), std::string::npos);
  EXPECT_EQ(r.err.find("s3cret"), std::string::npos);
  EXPECT_EQ(slurp((test_dir() / "requests.jsonl").string()).find("s3cret"), std::string::npos);
  fs::remove_all(test_dir());
}

TEST(ServeLimits, OversizedBodyGets413AndBadArgumentsExitWith2) {
  Server server(test_dir(), {"--max-request-bytes", "2000"});
  httplib::Client client("127.0.0.1", server.port());
  auto big = client.Post("/v1/chat/completions", chat_body(std::string(5000, 'a'), 2).dump(), "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  server.stop();
  fs::remove_all(test_dir());

  const ProcessResult bad = run({kRunner, "--plugin-path", kPlugins, "serve", "--model", "llava", "--port", "x"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("--port: expected an integer, found 'x'"), std::string::npos) << bad.err;
  const ProcessResult no_model = run({kRunner, "--plugin-path", kPlugins, "serve", "--port", "0"});
  EXPECT_EQ(no_model.status, 2);
  EXPECT_NE(no_model.err.find("no model given"), std::string::npos) << no_model.err;
}

// ---- the openai_compatible judge against the server ----

namespace {

class JudgeOverHttp : public ::testing::Test {
 protected:
  void SetUp() override { registry_.scan(kPlugins); }
  void TearDown() override { fs::remove_all(test_dir()); }
  std::shared_ptr<Plugin> make_judge(const Server& server, const std::string& extra_yaml = "") {
    const YAML::Node options = YAML::Load("{base_url: " + server.base_url() + ", model: llava, max_tokens: 8, " +
                                          "backoff_s: 0.01" + extra_yaml + "}");
    return registry_.create(PluginKind::Judge, "openai_compatible", options, "test");
  }
  static Judge& judge(const std::shared_ptr<Plugin>& p) { return *dynamic_cast<Judge*>(p.get()); }
  Registry registry_;
};

const std::string kChat = "/v1/chat/completions";

}  // namespace

TEST_F(JudgeOverHttp, RepliesEqualTheModelsOwnGenerationInRequestOrder) {
  Server server(test_dir());
  auto plugin = make_judge(server, ", concurrency: 3");
  std::vector<JudgeRequest> requests;
  for (int i = 0; i < 5; ++i) requests.push_back({"You grade answers.", "Answer " + std::to_string(i) + ": yes", -1, -1, {}});
  const std::vector<JudgeReply> replies = judge(plugin).judge(requests);
  ASSERT_EQ(replies.size(), 5u);
  DirectModel direct;
  GenerationConfig config;
  config.max_new_tokens = 8;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(replies[i].ok) << replies[i].error;
    EXPECT_EQ(replies[i].text,
              direct.generate(ChatSample{{{"human", "You grade answers.\n\nAnswer " + std::to_string(i) + ": yes"}}, {}},
                              config).text) << i;
  }
  EXPECT_EQ(server.count(kChat, 200), 5);
  // identity() names endpoint, model and settings, so cached replies are never shared across judges.
  EXPECT_EQ(judge(plugin).identity(), "openai_compatible base_url=" + server.base_url() +
                                          " model=llava temperature=0 max_tokens=8");
}

TEST_F(JudgeOverHttp, RetriesOn503And429UntilTheServerAnswers) {
  for (const auto& [status, failures] : std::vector<std::pair<int, int>>{{503, 2}, {429, 1}}) {
    Server server(test_dir(), {"--fail-first", std::to_string(failures), "--fail-status", std::to_string(status)});
    auto plugin = make_judge(server, ", max_retries: " + std::to_string(failures));
    const auto replies = judge(plugin).judge({{"", "Is it red?", -1, -1, {}}});
    ASSERT_TRUE(replies[0].ok) << status << ": " << replies[0].error;
    EXPECT_EQ(server.count(kChat, status), failures);
    EXPECT_EQ(server.count(kChat, 200), 1);
  }
}

TEST_F(JudgeOverHttp, GivesUpAfterMaxRetriesWithTheStatusInTheError) {
  Server server(test_dir(), {"--fail-first", "5", "--fail-status", "503"});
  auto plugin = make_judge(server, ", max_retries: 1");
  const auto replies = judge(plugin).judge({{"", "Is it red?", -1, -1, {}}});
  ASSERT_FALSE(replies[0].ok);
  EXPECT_NE(replies[0].error.find("HTTP 503"), std::string::npos) << replies[0].error;
  EXPECT_NE(replies[0].error.find("gave up after 1 retries"), std::string::npos) << replies[0].error;
  EXPECT_EQ(server.count(kChat), 2);
}

TEST_F(JudgeOverHttp, ClientErrorsAreNotRetried) {
  Server server(test_dir());
  auto plugin = make_judge(server, ", max_retries: 4");
  const auto replies = judge(plugin).judge({{"", "Is it red?", -1, 0, {}}});  // max_tokens 0: the server says 400
  ASSERT_FALSE(replies[0].ok);
  EXPECT_NE(replies[0].error.find("HTTP 400"), std::string::npos) << replies[0].error;
  EXPECT_EQ(server.count(kChat), 1);
}

TEST_F(JudgeOverHttp, ConnectionErrorsAreRetriedThenReported) {
  int port = 0;
  {
    Server gone(test_dir());
    port = gone.port();
  }  // stopped: nothing listens on that port now
  const YAML::Node options = YAML::Load("{base_url: http://127.0.0.1:" + std::to_string(port) +
                                        "/v1, model: llava, max_retries: 2, backoff_s: 0.01, timeout_s: 5}");
  auto plugin = registry_.create(PluginKind::Judge, "openai_compatible", options, "test");
  const auto replies = judge(plugin).judge({{"", "hello", -1, -1, {}}});
  ASSERT_FALSE(replies[0].ok);
  EXPECT_NE(replies[0].error.find("gave up after 2 retries"), std::string::npos) << replies[0].error;
}

TEST_F(JudgeOverHttp, ApiKeyComesFromTheNamedVariableAndAMissingOneIsAConfigError) {
  setenv("MMR_TEST_JUDGE_KEY", "k-123", 1);
  Server server(test_dir(), {"--api-key-env", "MMR_TEST_JUDGE_KEY"}, {{"MMR_TEST_JUDGE_KEY", "k-123"}});
  auto plugin = make_judge(server, ", api_key_env: MMR_TEST_JUDGE_KEY");
  const auto replies = judge(plugin).judge({{"", "hello", -1, -1, {}}});
  EXPECT_TRUE(replies[0].ok) << replies[0].error;
  EXPECT_EQ(judge(plugin).identity().find("k-123"), std::string::npos);
  unsetenv("MMR_TEST_JUDGE_KEY");
  try {
    make_judge(server, ", api_key_env: MMR_TEST_JUDGE_KEY");
    FAIL() << "no exception";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("environment variable 'MMR_TEST_JUDGE_KEY' is not set"), std::string::npos)
        << e.what();
  }
}
