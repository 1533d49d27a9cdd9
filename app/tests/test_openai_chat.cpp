// The OpenAI wire format of `runner serve` (app/openai_chat.h): data: URLs, messages → ChatSample, request settings,
// the errors a client gets for bad input, the chat.completion reply shape, and streaming: the chunks and which
// text of a reply in progress is settled enough to send.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/openai_chat.h"
#include "core/lib/util/base64.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr::serve;

namespace {

class OpenAiChat : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_openai_chat_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  ChatRequest parse(const std::string& body) { return parse_chat_request(json::parse(body), dir_, limits_); }
  // The message of the RequestError that parsing `body` throws ("" when it does not throw).
  std::string error_of(const std::string& body) {
    try {
      parse(body);
    } catch (const RequestError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
  RequestLimits limits_;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A real 40 x 30 PNG of the fixture, and it as a data: URL (the parser reads an image's header).
const std::string kPng = slurp(std::string(MMR_TEST_DATA_DIR) + "/tiny-llava/images/small.png");
const std::string kPngUrl = "data:image/png;base64," + mmr::base64_encode(kPng);

}  // namespace

TEST_F(OpenAiChat, StringContentBecomesOneHumanTurnWithDefaults) {
  const ChatRequest r = parse(R"({"model": "m", "messages": [{"role": "user", "content": "Hi there"}]})");
  ASSERT_EQ(r.sample.turns.size(), 1u);
  EXPECT_EQ(r.sample.turns[0].role, "human");
  EXPECT_EQ(r.sample.turns[0].text, "Hi there");
  EXPECT_TRUE(r.sample.images.empty());
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.config.max_new_tokens, RequestLimits{}.default_max_tokens);
  EXPECT_EQ(r.config.temperature, 0.0);
}

TEST_F(OpenAiChat, DataUrlImageIsDecodedToAFileAndAnnouncedWithTheImageToken) {
  const ChatRequest r = parse(R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": ")" + kPngUrl + R"("}},
      {"type": "text", "text": "What is this?"}]}]})");
  ASSERT_EQ(r.sample.images.size(), 1u);
  EXPECT_EQ(r.sample.turns[0].text, "<image>\nWhat is this?");
  EXPECT_EQ(fs::path(r.sample.images[0]).parent_path(), dir_);
  EXPECT_EQ(fs::path(r.sample.images[0]).extension(), ".png");
  EXPECT_EQ(slurp(r.sample.images[0]), kPng);
}

// Found by probing: a 164 KB PNG of 13000 x 13000 decoded under the decoder's own limit (6.6 s, 1.25 GB) while the
// model waited. Its header is read first now, for data: URLs and local files alike; nothing is written for it.
TEST_F(OpenAiChat, AnImageLargerThanMaxImagePixelsIsRefusedFromItsHeader) {
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (uint32_t v : {13000u, 13000u})
    for (int shift = 24; shift >= 0; shift -= 8) png += static_cast<char>((v >> shift) & 0xff);
  png += std::string("\x08\x02\0\0\0\0\0\0\0", 9);  // 8-bit RGB, then a CRC the header check does not need
  auto body = [](const std::string& url) {
    return json{{"messages", json::array({json{{"role", "user"}, {"content", json::array({
        json{{"type", "image_url"}, {"image_url", {{"url", url}}}}, json{{"type", "text"}, {"text", "?"}}})}}})}}.dump();
  };
  EXPECT_EQ(error_of(body("data:image/png;base64," + mmr::base64_encode(png))),
            "messages[0].content[0].image_url.url: the image is 13000 x 13000 pixels, more than this server takes "
            "(50000000 pixels, --max-image-pixels)");
  EXPECT_TRUE(fs::is_empty(dir_)) << "the image was written";
  const fs::path local = fs::canonical(dir_) / "big.png";
  std::ofstream(local, std::ios::binary) << png;
  limits_.allowed_media_dirs = {fs::canonical(dir_)};
  EXPECT_NE(error_of(body(local.string())).find("13000 x 13000"), std::string::npos);
  limits_.max_image_pixels = 40 * 30 - 1;  // the fixture's PNG is 40 x 30
  EXPECT_NE(error_of(body(kPngUrl)).find("40 x 30 pixels"), std::string::npos);
  limits_.max_image_pixels = 40 * 30;
  EXPECT_EQ(parse(body(kPngUrl)).sample.images.size(), 1u);
  EXPECT_NE(error_of(body("data:image/png;base64," + mmr::base64_encode("not a png"))).find("cannot decode image"),
            std::string::npos);
  // A local file is read whole to find its size: past 64 MiB it is refused unread (found by probing: a 1.2 GB
  // sparse file took 21 s and 2.4 GB as an "image").
  const fs::path sparse = fs::canonical(dir_) / "sparse.png";
  std::ofstream(sparse, std::ios::binary) << kPng;
  fs::resize_file(sparse, (uintmax_t{64} << 20) + 1);
  EXPECT_NE(error_of(body(sparse.string())).find("is larger than 67108864 bytes"), std::string::npos);
}

TEST_F(OpenAiChat, LocalPathsFileUrlsSystemAndTurnsMapToLlavaRoles) {
  const std::string image = fs::canonical(dir_).string() + "/x.png";
  std::ofstream(image, std::ios::binary) << kPng;
  limits_.allowed_media_dirs = {fs::canonical(dir_)};
  const ChatRequest r = parse(json{{"messages", json::array({
      json{{"role", "system"}, {"content", "Be brief."}},
      json{{"role", "user"}, {"content", json::array({json{{"type", "text"}, {"text", "A"}},
                                                      json{{"type", "image_url"}, {"image_url", {{"url", "file://" + image}}}}})}},
      json{{"role", "assistant"}, {"content", "B"}},
      json{{"role", "user"}, {"content", json::array({json{{"type", "image_url"}, {"image_url", image}},
                                                      json{{"type", "text"}, {"text", "C"}}})}}})},
      {"temperature", 0.7}, {"top_p", 0.9}, {"max_tokens", 5}, {"seed", 3}, {"stop", json::array({"x", "y"})}}.dump());
  ASSERT_EQ(r.sample.turns.size(), 3u);
  EXPECT_EQ(r.sample.turns[0].text, "<image>\nBe brief.\n\nA");
  EXPECT_EQ(r.sample.turns[1].role, "gpt");
  EXPECT_EQ(r.sample.turns[1].text, "B");
  EXPECT_EQ(r.sample.turns[2].text, "<image>\nC");
  EXPECT_EQ(r.sample.images, (std::vector<std::string>{image, image}));
  EXPECT_DOUBLE_EQ(r.config.temperature, 0.7);
  EXPECT_DOUBLE_EQ(r.config.top_p, 0.9);
  EXPECT_EQ(r.config.max_new_tokens, 5);
  EXPECT_EQ(r.config.seed, 3u);
  EXPECT_EQ(r.config.stop_strings, (std::vector<std::string>{"x", "y"}));
}

// Found by probing: any file of the server was read as an "image", and the error told an existing unreadable file
// from a missing one. Local images now come only from the operator's folders, and every refusal reads the same.
TEST_F(OpenAiChat, LocalImagesComeOnlyFromAllowedFoldersAndRefusalsRevealNothing) {
  const fs::path allowed = fs::canonical(dir_) / "media", outside = fs::canonical(dir_) / "private";
  fs::create_directories(allowed);
  fs::create_directories(outside);
  std::ofstream(allowed / "ok.png", std::ios::binary) << kPng;
  std::ofstream(outside / "secret.png") << "png";
  fs::create_symlink(outside / "secret.png", allowed / "link.png");
  auto body = [](const std::string& url) {
    return json{{"messages", json::array({json{{"role", "user"}, {"content", json::array({
        json{{"type", "image_url"}, {"image_url", {{"url", url}}}}, json{{"type", "text"}, {"text", "?"}}})}}})}}.dump();
  };
  EXPECT_NE(error_of(body((allowed / "ok.png").string())).find("local image paths are off on this server"),
            std::string::npos);
  limits_.allowed_media_dirs = {allowed};
  EXPECT_EQ(parse(body("file://" + (allowed / "ok.png").string())).sample.images,
            (std::vector<std::string>{(allowed / "ok.png").string()}));
  const std::string refused = "messages[0].content[0].image_url.url: '{}' is not an image file under the folders "
                              "this server allows";
  for (const fs::path& p : {outside / "secret.png", outside / "missing.png", allowed / "link.png",
                            allowed / ".." / "private" / "secret.png", fs::path("/etc/passwd"), fs::path("/etc"),
                            allowed})
    EXPECT_EQ(error_of(body(p.string())), fmt::format(refused, p.string())) << p;
  // A folder whose name starts like an allowed one is not under it.
  fs::create_directories(fs::canonical(dir_) / "media2");
  std::ofstream(fs::canonical(dir_) / "media2" / "x.png") << "png";
  EXPECT_NE(error_of(body((fs::canonical(dir_) / "media2" / "x.png").string())).find("is not an image file"),
            std::string::npos);
}

TEST_F(OpenAiChat, BadRequestsGetMessagesNamingTheField) {
  EXPECT_NE(error_of(R"([1])").find("JSON object"), std::string::npos);
  EXPECT_NE(error_of(R"({})").find("missing 'messages'"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": []})").find("non-empty array"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "robot", "content": "x"}]})").find("messages[0].role"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "assistant", "content": "x"}]})").find("alternate"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]})")
                .find("last message must be a user message"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": 5}]})").find("messages[0].content"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": [{"type": "audio"}]}]})")
                .find("messages[0].content[0].type"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]})")
                .find("remote image URLs"), std::string::npos);
  // The base64 rules themselves are tested in core/lib/util/tests/test_util.cpp (Base64Rules::kStrict).
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,Zm@@"}}]}]})")
                .find("messages[0].content[0].image_url.url: base64: invalid character '@' at offset 2"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64,Zm9v"}}]}]})")
                .find("unsupported image type 'text/plain'"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/no/such.png"}}]}]})")
                .find("local image paths are off on this server"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})").find("'max_tokens'"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})").find("'temperature'"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})").find("'stream': expected true or false"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}})")
                .find("'stream_options': only allowed when 'stream' is true"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"include_usage": 1}})")
                .find("'stream_options.include_usage'"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "n": 2})").find("n=1"), std::string::npos);
  EXPECT_NE(error_of(R"({"messages": [{"role": "user", "content": "x"}], "stop": [1]})").find("'stop'"), std::string::npos);
}

TEST_F(OpenAiChat, MessageAndImageCountsAreRefusedBeforeAnyImageIsDecoded) {
  limits_.max_messages = 2;
  limits_.max_images = 1;
  EXPECT_EQ(error_of(R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                       {"role": "user", "content": "c"}]})"),
            "'messages': 3 messages, more than this server takes in one request (2)");
  // The first image decodes, the second is not even base64: the count is refused before either is decoded.
  const std::string body = R"({"messages": [{"role": "user", "content": [
      {"type": "image_url", "image_url": {"url": ")" + kPngUrl + R"("}},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]})";
  EXPECT_EQ(error_of(body), "'messages': 2 images, more than this server takes in one request (1)");
  EXPECT_TRUE(fs::is_empty(dir_)) << "an image was written";
  limits_.max_images = 2;
  EXPECT_NE(error_of(body).find("base64"), std::string::npos);
}

TEST(OpenAiReply, HasTheChatCompletionShapeWithUsageAndFinishReason) {
  mmr::Generation g;
  g.text = "hello";
  g.token_ids = {5, 6, 2};
  g.finish_reason = "eos";
  g.prompt_tokens = 600;
  const json r = chat_completion(g, "chatcmpl-1", "llava", 42);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"], "chatcmpl-1");
  EXPECT_EQ(r["model"], "llava");
  EXPECT_EQ(r["created"], 42);
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "hello");
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["usage"]["prompt_tokens"], 600);
  EXPECT_EQ(r["usage"]["completion_tokens"], 3);
  EXPECT_EQ(r["usage"]["total_tokens"], 603);
  g.finish_reason = "length";
  EXPECT_EQ(chat_completion(g, "c", "m", 0)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(error_body("bad", "invalid_request_error")["error"]["message"], "bad");
}

TEST_F(OpenAiChat, StreamAndIncludeUsageAreRead) {
  const char* messages = R"("messages": [{"role": "user", "content": "x"}])";
  EXPECT_FALSE(parse(fmt::format("{{{}}}", messages)).stream);
  EXPECT_FALSE(parse(fmt::format(R"({{{}, "stream": false}})", messages)).stream);
  const ChatRequest r = parse(fmt::format(R"({{{}, "stream": true}})", messages));
  EXPECT_TRUE(r.stream);
  EXPECT_FALSE(r.include_usage);
  const ChatRequest u = parse(fmt::format(R"({{{}, "stream": true, "stream_options": {{"include_usage": true}}}})", messages));
  EXPECT_TRUE(u.stream);
  EXPECT_TRUE(u.include_usage);
}

TEST(OpenAiStream, ChunksHaveOpenAisShape) {
  const json c = completion_chunk("chatcmpl-7", "llava", 42, json{{"content", "hi"}}, nullptr, false);
  EXPECT_EQ(c["object"], "chat.completion.chunk");
  EXPECT_EQ(c["id"], "chatcmpl-7");
  EXPECT_EQ(c["created"], 42);
  EXPECT_EQ(c["model"], "llava");
  EXPECT_EQ(c["choices"][0]["index"], 0);
  EXPECT_EQ(c["choices"][0]["delta"]["content"], "hi");
  EXPECT_TRUE(c["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(c.contains("usage"));
  EXPECT_TRUE(completion_chunk("c", "m", 0, json::object(), "stop", true)["usage"].is_null());
  mmr::Generation g;
  g.token_ids = {1, 2};
  g.prompt_tokens = 9;
  g.finish_reason = "length";
  const json u = usage_chunk(g, "c", "m", 0);
  EXPECT_TRUE(u["choices"].is_array() && u["choices"].empty());
  EXPECT_EQ(u["usage"], (json{{"prompt_tokens", 9}, {"completion_tokens", 2}, {"total_tokens", 11}}));
  EXPECT_EQ(finish_reason(g), "length");
  g.finish_reason = "stop_string";
  EXPECT_EQ(finish_reason(g), "stop");
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(sse_event(json{{"a", "\xC3"}}), "data: {\"a\":\"\xEF\xBF\xBD\"}\n\n");  // broken UTF-8: U+FFFD
}

TEST(OpenAiStream, SettledTextHoldsBackWhatMoreTokensCanChange) {
  EXPECT_EQ(settled_length("hello", {}), 5u);
  EXPECT_EQ(settled_length("", {"x"}), 0u);
  // An incomplete UTF-8 sequence at the end: "é" is C3 A9, "€" E2 82 AC, "𝄞" F0 9D 84 9E.
  EXPECT_EQ(settled_length("ab\xC3", {}), 2u);
  EXPECT_EQ(settled_length("ab\xC3\xA9", {}), 4u);
  EXPECT_EQ(settled_length("ab\xE2\x82", {}), 2u);
  EXPECT_EQ(settled_length("ab\xF0\x9D\x84", {}), 2u);
  EXPECT_EQ(settled_length("ab\xF0\x9D\x84\x9E", {}), 6u);
  // Trailing U+FFFD (a byte token decoded before its character is complete).
  EXPECT_EQ(settled_length("ab\xEF\xBF\xBD\xEF\xBF\xBD", {}), 2u);
  EXPECT_EQ(settled_length("a\xEF\xBF\xBD" "b", {}), 5u);
  // A suffix that may start a stop string, the earliest of them; a complete stop string and what follows.
  EXPECT_EQ(settled_length("Hello, Us", {"User:"}), 7u);
  EXPECT_EQ(settled_length("Hello, U", {"User:", "Uh"}), 7u);
  EXPECT_EQ(settled_length("Hello, Ux", {"User:"}), 9u);
  EXPECT_EQ(settled_length("Hi User: yes", {"User:"}), 3u);
  EXPECT_EQ(settled_length("abab", {"abac"}), 2u);  // "ab" may start "abac"; "abab" cannot
  EXPECT_EQ(settled_length("xyz", {""}), 3u);       // an empty stop string stops nothing
}

TEST(OpenAiStream, DeltasConcatenateToTheFinalTextAndNeverLeakAStopString) {
  // The texts a reply goes through, token by token, with the stop string "###" split across three tokens.
  const std::vector<std::string> texts = {"The", "The c\xC3", "The c\xC3\xA9", "The c\xC3\xA9 #", "The c\xC3\xA9 ##",
                                          "The c\xC3\xA9 ###"};
  DeltaStream stream({"###"});
  std::string joined;
  std::vector<std::string> deltas;
  for (const auto& t : texts) {
    const std::string d = stream.next(t);
    if (!d.empty()) deltas.push_back(d);
    joined += d;
    EXPECT_EQ(joined.find('#'), std::string::npos) << "a stop string's start leaked: " << joined;
  }
  EXPECT_EQ(deltas, (std::vector<std::string>{"The", " c", "\xC3\xA9", " "}));
  joined += stream.finish("The c\xC3\xA9 ");  // generate()'s text: the stop string cut
  EXPECT_EQ(joined, "The c\xC3\xA9 ");
  EXPECT_TRUE(stream.consistent());
  // A "#" that did not become the stop string is sent once the next token shows it.
  DeltaStream other({"###"});
  EXPECT_EQ(other.next("a #"), "a ");
  EXPECT_EQ(other.next("a #b"), "#b");
  EXPECT_EQ(other.finish("a #b!"), "!");
  // A text that changes what was sent cannot be taken back: it is reported.
  DeltaStream broken({});
  EXPECT_EQ(broken.next("abc"), "abc");
  EXPECT_EQ(broken.next("abd e"), "");
  EXPECT_FALSE(broken.consistent());
}
