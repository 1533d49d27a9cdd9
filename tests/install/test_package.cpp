// The Debian package, made the way a release would be: `cpack` on this build gives mmrunner_<version>_amd64.deb,
// whose dependencies dpkg-shlibdeps computed; unpacked into an empty root (dpkg-deb -x, what dpkg -i writes, with no
// build tree beside it), its runner finds every plugin the build's runner lists, and loads the tiny model through
// `runner serve` (which needs the SentencePiece module from the package); `apt-get install --simulate` resolves its
// dependencies. A real `dpkg -i` on a fresh machine is what this does not do: the package is checked without
// installing it into this system.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "process.h"

namespace fs = std::filesystem;
using namespace mmr::test;

namespace {

const fs::path kBuild = MMR_TEST_BINARY_DIR;
const fs::path kTinyModel = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava" / "model";

// "kind name" of every plugin `runner plugins` lists (its lines "<kind> <name> <version>  (<path>)"), and the paths.
std::set<std::string> plugins_listed(const std::string& out, std::vector<std::string>* paths = nullptr) {
  std::set<std::string> names;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == ' ' || line.find("  (") == std::string::npos) continue;
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    names.insert(kind + " " + name);
    if (paths) paths->push_back(line.substr(line.find("  (") + 3, line.rfind(')') - line.find("  (") - 3));
  }
  return names;
}

class Package : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_package_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "root");
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(Package, TheDebInstallsARunnerThatFindsEveryPluginAndTheTokenizer) {
  const ProcessResult pack = run({MMR_CPACK, "--config", (kBuild / "CPackConfig.cmake").string(), "-B", dir_.string()});
  ASSERT_EQ(pack.status, 0) << pack.out << pack.err;
  fs::path deb;
  for (const auto& e : fs::directory_iterator(dir_))
    if (e.path().extension() == ".deb") deb = e.path();
  ASSERT_FALSE(deb.empty()) << pack.out;
  EXPECT_NE(deb.filename().string().find("mmrunner_"), std::string::npos);

  const ProcessResult depends = run({MMR_DPKG_DEB, "--field", deb.string(), "Depends"});
  ASSERT_EQ(depends.status, 0) << depends.err;
  for (const char* package : {"libc6", "libtorch", "libyaml-cpp", "libsqlite3"})
    EXPECT_NE(depends.out.find(package), std::string::npos) << "Depends: " << depends.out;

  // apt resolves every dependency (simulated: nothing is installed into this system).
  if (fs::exists("/usr/bin/apt-get")) {
    const ProcessResult apt = run({"/usr/bin/apt-get", "install", "--simulate", "--no-install-recommends",
                                   deb.string()});
    EXPECT_EQ(apt.status, 0) << apt.out << apt.err;
    EXPECT_NE(apt.out.find("Inst mmrunner"), std::string::npos) << apt.out << apt.err;
  }

  const fs::path root = dir_ / "root";
  ASSERT_EQ(run({MMR_DPKG_DEB, "-x", deb.string(), root.string()}).status, 0);
  const std::string runner = (root / "usr" / "bin" / "runner").string();
  ASSERT_TRUE(fs::exists(runner));
  const std::map<std::string, std::string> env = {{"RUNNER_PLUGIN_PATH", ""}, {"MMR_SENTENCEPIECE_MODULE", ""}};
  const ProcessResult built = run({(kBuild / "bin" / "runner").string(), "plugins"}, env);
  std::vector<std::string> paths;
  const ProcessResult installed = run({runner, "plugins"}, env);
  ASSERT_EQ(installed.status, 0) << installed.err;
  const std::set<std::string> names = plugins_listed(installed.out, &paths);
  EXPECT_GE(names.size(), 20u) << installed.out;
  EXPECT_EQ(names, plugins_listed(built.out)) << installed.out;
  for (const auto& p : paths)
    EXPECT_EQ(p.rfind((root / "usr" / "lib" / "mmrunner" / "plugins").string(), 0), 0u) << p;

  // `runner serve` loads the model, tokenizer included, before it writes its port file.
  const fs::path port_file = dir_ / "port";
  Process serve({runner, "serve", "--model", "llava", "--model-opt", "path=" + kTinyModel.string(), "--port", "0",
                 "--port-file", port_file.string()},
                env);
  for (int i = 0; i < 600 && !fs::exists(port_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const bool listening = fs::exists(port_file);
  serve.signal(SIGTERM);
  const ProcessResult served = serve.wait();
  EXPECT_TRUE(listening) << served.err;
  EXPECT_EQ(served.status, 0) << served.err;
}
