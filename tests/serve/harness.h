// Shared by the serve/judge/evaluation end-to-end tests: a real `runner serve` process on loopback serving the
// tiny model, its request log, and the tiny model loaded in the test process for direct generation.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/lib/util/base64.h"
#include "core/api/chat_api.h"
#include "core/registry.h"
#include "process.h"

namespace mmr::test {

extern const std::string kRunner;
extern const std::string kPlugins;
extern const std::string kTinyModel;   // tests/data/tiny-llava/model
extern const std::string kTinyImages;  // tests/data/tiny-llava/images

std::string slurp(const std::string& path);
// A folder of this test's own under the temp dir: <prefix><pid>_<test name>.
std::filesystem::path per_test_dir(const std::string& prefix);

// `runner serve --model llava --model-opt path=<tiny> --port 0 ...` until destroyed (SIGTERM, then wait).
class Server {
 public:
  Server(const std::filesystem::path& dir, const std::vector<std::string>& extra_args = {},
         const std::map<std::string, std::string>& env = {}, const std::string& log_level = "warn");
  ~Server();
  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  pid_t pid() const { return process_->pid(); }
  // The request log's lines (time, method, path, status, body_sha256).
  std::vector<nlohmann::json> requests() const;
  // Requests to `path` that got `status` (any status when status < 0).
  int count(const std::string& path, int status = -1) const;
  // Stops the server; returns its exit status and output.
  ProcessResult stop();

 private:
  std::unique_ptr<Process> process_;
  std::string log_path_;
  int port_ = 0;
  bool stopped_ = false;
};

// The tiny llava model in this process (through the plugin, so this test is not linked with LibTorch).
class DirectModel {
 public:
  DirectModel();
  Generation generate(const ChatSample& sample, const GenerationConfig& config);

 private:
  Registry registry_;
  std::shared_ptr<Plugin> plugin_;
};

}  // namespace mmr::test
