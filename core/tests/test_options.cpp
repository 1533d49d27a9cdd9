// The option binder (core/api/options.h): one bind() yields the schema the registry checks and the values a plugin
// reads, so a name, type, default and help exist once.
#include <gtest/gtest.h>

#include "core/api/options.h"
#include "core/registry.h"

namespace {

struct Config {
  double beta;
  int64_t steps;
  bool fast;
  std::string loss, path;
  std::vector<std::string> targets;
  YAML::Node model;
  void bind(mmr::OptionBinder& o) {
    o.bind("beta", &beta, 0.1, "KL strength");
    o.bind("steps", &steps, 3, "steps");
    o.bind("fast", &fast, false, "go fast");
    o.one_of("loss", &loss, "sigmoid", {"sigmoid", "ipo"}, "the loss");
    o.bind("path", &path, "", "a file", "path");
    o.bind("targets", &targets, std::vector<std::string>{"q_proj", "v_proj"}, "modules");
    o.required("model", &model, "the model");
    o.check(beta > 0, "beta", "must be positive");
  }
};

// The registry's checking, then the binder's reading, as a plugin constructor sees it.
Config read(const std::string& yaml) {
  const YAML::Node checked = mmr::check_options(mmr::schema_of<Config>(), YAML::Load(yaml), "exp.yaml", "test");
  return mmr::read_options<Config>(mmr::Options(checked, "exp.yaml"));
}

TEST(OptionBinder, DeclaresTheSchemaWithTypesDefaultsAndHelp) {
  const mmr::OptionSchema schema = mmr::schema_of<Config>();
  ASSERT_EQ(schema.size(), 7u);
  EXPECT_EQ(schema[0].type, "float");
  EXPECT_EQ(schema[0].default_yaml, "0.1");
  EXPECT_EQ(schema[1].type, "int");
  EXPECT_EQ(schema[1].default_yaml, "3");
  EXPECT_EQ(schema[2].default_yaml, "false");
  EXPECT_EQ(schema[3].help, "the loss (sigmoid | ipo)");
  EXPECT_EQ(schema[4].type, "path");
  EXPECT_EQ(schema[4].default_yaml, "") << "an empty string is no default (runner plugins shows -)";
  EXPECT_EQ(schema[5].type, "list");
  EXPECT_EQ(schema[5].default_yaml, "[q_proj, v_proj]");
  EXPECT_EQ(schema[6].type, "any");
  EXPECT_TRUE(schema[6].required);
}

TEST(OptionBinder, ReadsGivenValuesAndDefaults) {
  const Config c = read("{model: llava, beta: 0.3, loss: ipo, targets: [o_proj]}");
  EXPECT_DOUBLE_EQ(c.beta, 0.3);
  EXPECT_EQ(c.steps, 3);
  EXPECT_FALSE(c.fast);
  EXPECT_EQ(c.loss, "ipo");
  EXPECT_EQ(c.path, "");
  EXPECT_EQ(c.targets, std::vector<std::string>{"o_proj"});
  EXPECT_EQ(c.model.Scalar(), "llava");
}

TEST(OptionBinder, ChecksNameTheOptionAndItsPosition) {
  try {
    read("{model: llava,\n loss: dpoo}");
    FAIL() << "expected ConfigError";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("exp.yaml:2:8: loss: expected one of sigmoid, ipo, found 'dpoo'"),
              std::string::npos) << e.what();
  }
  try {
    read("{model: llava, beta: -1}");
    FAIL() << "expected ConfigError";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("beta: must be positive"), std::string::npos) << e.what();
  }
}

}  // namespace
