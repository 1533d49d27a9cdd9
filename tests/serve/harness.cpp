#include "harness.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace mmr::test {

const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const std::string kPlugins = (fs::path(MMR_TEST_BINARY_DIR) / "plugins").string();
const std::string kTinyModel = std::string(MMR_TEST_DATA_DIR) + "/tiny-llava/model";
const std::string kTinyImages = std::string(MMR_TEST_DATA_DIR) + "/tiny-llava/images";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path per_test_dir(const std::string& prefix) {
  return std::filesystem::temp_directory_path() /
         (prefix + std::to_string(getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

// True while the process runs (a child that exited stays a zombie until waited for: state 'Z').
static bool running(pid_t pid) {
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

Server::Server(const fs::path& dir, const std::vector<std::string>& extra_args,
               const std::map<std::string, std::string>& env, const std::string& log_level) {
  fs::create_directories(dir);
  const std::string port_file = (dir / "port").string();
  log_path_ = (dir / "requests.jsonl").string();
  fs::remove(port_file);
  fs::remove(log_path_);
  std::vector<std::string> argv = {kRunner, "--plugin-path", kPlugins, "--log-level", log_level, "serve",
                                   "--model", "llava", "--model-opt", "path=" + kTinyModel, "--port", "0",
                                   "--port-file", port_file, "--log-requests", log_path_};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<Process>(argv, env);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(port_file)) {
    if (std::chrono::steady_clock::now() > deadline || !running(process_->pid())) {
      const ProcessResult r = stop();
      throw std::runtime_error("runner serve did not start (status " + std::to_string(r.status) + "): " + r.err);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  port_ = std::stoi(slurp(port_file));
}

Server::~Server() {
  if (!stopped_) stop();
}

ProcessResult Server::stop() {
  stopped_ = true;
  process_->signal(SIGTERM);
  return process_->wait();
}

std::vector<nlohmann::json> Server::requests() const {
  std::vector<nlohmann::json> out;
  std::istringstream in(slurp(log_path_));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

int Server::count(const std::string& path, int status) const {
  int n = 0;
  for (const auto& r : requests()) n += r["path"] == path && (status < 0 || r["status"] == status);
  return n;
}

DirectModel::DirectModel() {
  registry_.scan(kPlugins);
  YAML::Node options;
  options["path"] = kTinyModel;
  plugin_ = registry_.create(PluginKind::Model, "llava", options, "test");
}

Generation DirectModel::generate(const ChatSample& sample, const GenerationConfig& config) {
  return chat_model(*plugin_).generate({sample}, config).at(0);
}

}  // namespace mmr::test
