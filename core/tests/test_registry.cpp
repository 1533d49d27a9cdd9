// Plugin loading: discovery, ABI and build checks, missing entry symbols, exceptions inside plugins, option
// checking, search paths, and library lifetime. Uses the small plugins built under tests/test_plugins.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/registry.h"

namespace fs = std::filesystem;
using namespace mmr;

namespace {

const fs::path kGood = fs::path(MMR_TEST_BINARY_DIR) / "tests" / "test_plugins" / "good";
const fs::path kBad = fs::path(MMR_TEST_BINARY_DIR) / "tests" / "test_plugins" / "bad";

std::string failure_for(const Registry& r, const std::string& file) {
  for (const auto& f : r.failures())
    if (f.path.filename() == file) return f.reason;
  return "<loaded or not seen>";
}

YAML::Node yaml(const std::string& text) { return YAML::Load(text); }

}  // namespace

TEST(Registry, LoadsGoodPluginsWithTheirDescriptors) {
  Registry r;
  r.scan(kGood);
  EXPECT_EQ(r.names(PluginKind::Algorithm), (std::vector<std::string>{"counter", "throws_ctor"}));
  const PluginInfo& bench = r.find(PluginKind::Benchmark, "line_bench");
  EXPECT_EQ(bench.version, "0.2.0");
  EXPECT_EQ(bench.path, fs::canonical(kGood / "libline_bench.so"));
  ASSERT_EQ(bench.options.size(), 1u);
  EXPECT_EQ(bench.options[0].name, "file");
}

TEST(Registry, UnknownPluginListsTheLoadedOnesOfThatKind) {
  Registry r;
  r.scan(kGood);
  try {
    r.find(PluginKind::Algorithm, "countr");
    FAIL();
  } catch (const PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown algorithm 'countr'; loaded algorithms: counter, throws_ctor"),
              std::string::npos)
        << e.what();
  }
}

TEST(Registry, AbiMismatchShowsBothNumbers) {
  Registry r;
  r.scan(kBad);
  EXPECT_EQ(failure_for(r, "libbad_abi.so"),
            "ABI mismatch: plugin has ABI 999, this runner has ABI " + std::to_string(kPluginAbiVersion) +
                "; rebuild the plugin");
  EXPECT_EQ(r.find_if(PluginKind::Algorithm, "bad_abi"), nullptr);
}

TEST(Registry, BuildMismatchShowsBothBuildIds) {
  Registry r;
  r.scan(kBad);
  EXPECT_EQ(failure_for(r, "libbad_build.so"),
            std::string("build mismatch: plugin was built with 'Clang-99.0/libtorch-0.1', this runner with '") +
                kBuildId + "'; rebuild the plugin");
}

TEST(Registry, LibraryWithoutEntrySymbolIsReported) {
  Registry r;
  r.scan(kBad);
  EXPECT_EQ(failure_for(r, "libno_entry.so"),
            "missing entry symbol 'mmr_plugin_entry' (was it built with MMR_PLUGIN?)");
}

TEST(Registry, UnknownPluginErrorAlsoNamesLibrariesThatFailedToLoad) {
  Registry r;
  r.scan(kBad);
  try {
    r.find(PluginKind::Algorithm, "bad_abi");
    FAIL();
  } catch (const PluginError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("loaded algorithms: (none)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("libbad_abi.so: ABI mismatch"), std::string::npos) << msg;
  }
}

TEST(Registry, ExceptionInsidePluginIsRethrownWithNameAndFile) {
  Registry r;
  r.scan(kGood);
  try {
    r.create(PluginKind::Algorithm, "throws_ctor", YAML::Node(), "exp.yaml");
    FAIL();
  } catch (const PluginError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("algorithm plugin 'throws_ctor' (" + fs::canonical(kGood / "libthrows_ctor.so").string() +
                       ") failed: cannot start: no GPU in this test"),
              std::string::npos)
        << msg;
  }
}

TEST(Registry, ConfigErrorFromAPluginKeepsItsPositionAndGainsThePluginName) {
  Registry r;
  r.scan(kGood);
  try {
    r.create(PluginKind::Algorithm, "counter", yaml("steps: 3\ndecay: -1\n"), "exp.yaml");
    FAIL();
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("exp.yaml:2:8: decay must be positive [algorithm plugin 'counter'", 0), 0u) << msg;
  }
}

TEST(Registry, OptionsAreCheckedAgainstTheSchema) {
  Registry r;
  r.scan(kGood);
  auto message = [&](const std::string& text) {
    try {
      r.create(PluginKind::Algorithm, "counter", yaml(text), "exp.yaml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message("step: 3").find("exp.yaml:1:7: algorithm 'counter': unknown option 'step'; known options: decay, "
                                    "fail_at, input, marker, min_input_lines, sleep_ms, start, steps"),
            std::string::npos)
      << message("step: 3");
  EXPECT_NE(message("steps: many").find("exp.yaml:1:8: algorithm 'counter': option 'steps': expected an integer, "
                                        "found 'many'"),
            std::string::npos)
      << message("steps: many");
  EXPECT_NE(message("steps: 2.5").find("expected an integer, found '2.5'"), std::string::npos);
  EXPECT_NE(message("start: [1]").find("option 'start': expected a number, found a list"), std::string::npos);
  EXPECT_EQ(message("steps: 2\nstart: 1e-3"), "");
}

TEST(Registry, CreateFromCheckedOptionsDoesNotCheckThemAgain) {
  Registry r;
  r.scan(kGood);
  const PluginInfo& info = r.find(PluginKind::Algorithm, "counter");
  const Options checked(check_options(info.options, yaml("steps: 3"), "exp.yaml", "stage 't'"), "exp.yaml");
  EXPECT_EQ(checked.get<double>("decay"), 0.5);  // the one check filled the defaults in
  EXPECT_NE(r.create(info, checked), nullptr);
  // The plugin gets exactly what it is handed: a key the schema does not know is not rejected a second time...
  YAML::Node extra = YAML::Clone(checked.node());
  extra["not_in_schema"] = 1;
  EXPECT_NE(r.create(info, Options(extra, "exp.yaml")), nullptr);
  // ...and errors from inside the plugin still name it.
  YAML::Node bad = YAML::Clone(checked.node());
  bad["decay"] = -1;
  try {
    r.create(info, Options(bad, "exp.yaml"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("decay must be positive [algorithm plugin 'counter'"), std::string::npos)
        << e.what();
  }
}

TEST(Registry, MissingRequiredOptionIsNamed) {
  const OptionSchema schema = {{"path", "path", "", "the checkpoint folder", /*required=*/true}};
  try {
    check_options(schema, YAML::Load("{}"), "exp.yaml", "model 'llava'");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("model 'llava': missing required option 'path' (the checkpoint folder)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Registry, DefaultsAreFilledIn) {
  const OptionSchema schema = {{"beta", "float", "0.1", ""}, {"loss", "string", "sigmoid", ""}, {"x", "int", "", ""}};
  const YAML::Node out = check_options(schema, YAML::Load("{loss: ipo}"), "exp.yaml", "algorithm 'dpo'");
  EXPECT_EQ(out["beta"].as<double>(), 0.1);
  EXPECT_EQ(out["loss"].as<std::string>(), "ipo");
  EXPECT_FALSE(out["x"]);
}

TEST(Registry, PluginPathEnvironmentSkipsEmptyEntriesAndNeverTheCurrentDirectory) {
  // The current directory holds a plugin; "::" in RUNNER_PLUGIN_PATH must not make us load it.
  const fs::path cwd = fs::current_path();
  const fs::path tmp = fs::temp_directory_path() / ("mmr_reg_cwd_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  fs::copy_file(kGood / "libcounter.so", tmp / "libcounter.so", fs::copy_options::overwrite_existing);
  fs::current_path(tmp);
  setenv("RUNNER_PLUGIN_PATH", (":" + kGood.string() + "::").c_str(), 1);
  Registry r;
  r.scan_default({});
  fs::current_path(cwd);
  unsetenv("RUNNER_PLUGIN_PATH");
  EXPECT_EQ(r.find(PluginKind::Algorithm, "counter").path, fs::canonical(kGood / "libcounter.so"));
  for (const auto& f : r.failures()) EXPECT_NE(f.path.parent_path(), fs::canonical(tmp)) << f.path;
  fs::remove_all(tmp);
}

TEST(Registry, EarlierSearchPathShadowsLaterOneAndSaysSo) {
  const fs::path tmp = fs::temp_directory_path() / ("mmr_reg_shadow_" + std::to_string(getpid()));
  fs::create_directories(tmp);
  fs::copy_file(kGood / "libcounter.so", tmp / "libcounter.so", fs::copy_options::overwrite_existing);
  Registry r;
  r.scan(tmp);
  r.scan(kGood);
  EXPECT_EQ(r.find(PluginKind::Algorithm, "counter").path, fs::canonical(tmp / "libcounter.so"));
  EXPECT_NE(failure_for(r, "libcounter.so").find("shadowed by " + fs::canonical(tmp / "libcounter.so").string()),
            std::string::npos);
  fs::remove_all(tmp);
}

TEST(Registry, MissingFolderIsRecordedNotFatal) {
  Registry r;
  r.scan("/nonexistent/mmr/plugins");
  ASSERT_EQ(r.failures().size(), 1u);
  EXPECT_EQ(r.failures()[0].reason, "plugin folder does not exist or is not a folder");
}

TEST(Registry, ObjectsOutliveTheRegistryThatMadeThem) {
  std::shared_ptr<Plugin> bench;
  {
    Registry r;
    r.scan(kGood);
    bench = r.create(PluginKind::Benchmark, "line_bench", YAML::Node(), "exp.yaml");
  }  // the registry and its handles are gone; the object's deleter still holds the library
  const fs::path file = fs::temp_directory_path() / ("mmr_lines_" + std::to_string(getpid()));
  {
    std::ofstream(file) << "a b c\nd e\n";
  }
  YAML::Node args;
  args["file"] = file.string();
  const MetricList m = static_cast<Benchmark*>(bench.get())->score(Options(args, "test"));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].name, "lines");
  EXPECT_EQ(m[0].value, 2);
  EXPECT_EQ(m[1].value, 5);
  bench.reset();  // runs the plugin's destructor, then unloads it
  fs::remove(file);
}
