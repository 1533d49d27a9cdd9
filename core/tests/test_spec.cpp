// Experiment specs: grid expansion, zip, seeds, include/exclude, interpolation, overrides, identities and the
// file:line:column of every error.
#include <gtest/gtest.h>

#include <chrono>

#include <cstdlib>

#include "core/spec.h"

using namespace mmr;

namespace {

const char* kStages = R"(
stages:
  - {name: train, algorithm: counter}
)";

Experiment parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_experiment(text, "exp.yaml", overrides);
}

// The message of the ConfigError that parsing `text` throws ("" when none is thrown).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse(text, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> labels(const Experiment& e) {
  std::vector<std::string> out;
  for (const auto& t : e.trials) out.push_back(t.label);
  return out;
}

}  // namespace

TEST(GridExpansion, CartesianProductInFileOrderLastKeyFastest) {
  const auto e = parse(std::string(R"(
name: g
grid:
  a: [1, 2]
  b.c: [x, y, z]
)") + kStages);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"a=1 b.c=x", "a=1 b.c=y", "a=1 b.c=z", "a=2 b.c=x", "a=2 b.c=y",
                                                  "a=2 b.c=z"}));
  EXPECT_EQ(e.trials[4].config["b"]["c"].Scalar(), "y");
  EXPECT_EQ(e.trials[4].config["a"].Scalar(), "2");
  for (size_t i = 0; i < e.trials.size(); ++i) EXPECT_EQ(e.trials[i].ordinal, static_cast<int64_t>(i));
}

// Ten thousand trials (the default max_trials) expand with every trial's values still carrying their place in the
// file. Expansion used to copy yaml-cpp's whole node pool, every earlier trial included, into each new trial: 500
// trials took 20 s and 640 MB to plan, 2,000 took 61 s (core/spec.h, YamlPool; README, Performance, has the
// figures now). This test checks what the fix must keep.
TEST(GridExpansion, TenThousandTrialsKeepTheirValuesAndFilePositions) {
  std::string values;
  for (int i = 0; i < 10000; ++i) values += (i ? ", " : "") + std::to_string(i);
  const auto e = parse("name: big\ndefaults: {a: {b: 1}}\ngrid: {p: [" + values + "]}\nstages:\n"
                       "  - {name: s, algorithm: counter, steps: \"${p}\", decay: 0.5}\n");
  ASSERT_EQ(e.trials.size(), 10000u);
  const Trial& last = e.trials.back();
  EXPECT_EQ(last.stages[0].options["steps"].Scalar(), "9999");
  EXPECT_EQ(last.config["a"]["b"].Scalar(), "1");
  EXPECT_EQ(yaml_where(last.stages[0].options["decay"], "exp.yaml"), "exp.yaml:5:57: ");
  EXPECT_EQ(yaml_where(last.config["a"]["b"], "exp.yaml"), "exp.yaml:2:19: ");
}

TEST(GridExpansion, NoGridGivesOneTrialWithTheDefaultSeed) {
  const auto e = parse(std::string("name: one\ndefaults: {lr: 0.1}\n") + kStages);
  ASSERT_EQ(e.trials.size(), 1u);
  EXPECT_EQ(e.trials[0].seed, 42u);
  EXPECT_EQ(e.trials[0].label, "");
}

TEST(GridExpansion, ZipAdvancesListsTogetherAndCrossesTheGrid) {
  const auto e = parse(std::string(R"(
name: z
grid: {beta: [0.1, 0.3]}
zip:
  - {lr: [5e-5, 5e-6], epochs: [3, 2]}
)") + kStages);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"beta=0.1 lr=5e-5 epochs=3", "beta=0.1 lr=5e-6 epochs=2",
                                                  "beta=0.3 lr=5e-5 epochs=3", "beta=0.3 lr=5e-6 epochs=2"}));
}

TEST(GridExpansion, ZipListsOfDifferentLengthsAreAnErrorAtTheShorterList) {
  const std::string msg = error_of(std::string(R"(name: z
zip:
  - {lr: [1, 2, 3], epochs: [3, 2]}
)") + kStages);
  EXPECT_NE(msg.find("exp.yaml:3:29:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("has 2 values but 'lr' has 3"), std::string::npos) << msg;
}

TEST(GridExpansion, SeedsMultiplyEveryPointAndAppearInTheLabel) {
  const auto e = parse(std::string("name: s\ngrid: {a: [1, 2]}\nseeds: [7, 8]\n") + kStages);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"a=1 seed=7", "a=1 seed=8", "a=2 seed=7", "a=2 seed=8"}));
  EXPECT_EQ(e.trials[1].seed, 8u);
  EXPECT_NE(e.trials[0].identity, e.trials[1].identity);
}

TEST(GridExpansion, ExcludeDropsMatchingPointsAndIncludeAddsPoints) {
  const auto e = parse(std::string(R"(
name: ie
defaults: {c: 5}
grid: {a: [1, 2], b: [1, 2]}
exclude:
  - {a: 2, b: 1}
  - {a: 1, b: 2, c: 5}
include:
  - {a: 9, b: 9}
)") + kStages);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"a=1 b=1", "a=2 b=2", "a=9 b=9"}));
}

TEST(GridExpansion, ExcludeThatMatchesNothingIsAnError) {
  const std::string msg = error_of(std::string("name: x\ngrid: {a: [1, 2]}\nexclude:\n  - {a: 3}\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:4:5: exclude entry matches no grid point"), std::string::npos) << msg;
}

TEST(GridExpansion, DuplicatePointsRunOnce) {
  const auto e = parse(std::string("name: d\ngrid: {a: [1, 2]}\ninclude:\n  - {a: 1}\n") + kStages);
  EXPECT_EQ(e.trials.size(), 2u);
  EXPECT_EQ(e.duplicates_dropped, 1);
}

TEST(GridExpansion, AGridValueMustBeAList) {
  const std::string msg = error_of(std::string("name: x\ngrid:\n  a: 3\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:3:6: grid key 'a': expected a non-empty list of values, found '3'"), std::string::npos)
      << msg;
}

TEST(GridExpansion, AKeyVariedTwiceIsAnError) {
  const std::string msg = error_of(std::string("name: x\ngrid: {a: [1]}\nzip: [{a: [2]}]\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:3:8: 'a' is varied twice"), std::string::npos) << msg;
}

TEST(GridExpansion, SettingBelowAScalarIsAnError) {
  const std::string msg = error_of(std::string("name: x\ndefaults: {a: 1}\ngrid: {a.b: [1]}\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:3:8: 'a.b': 'a' is '1' in the configuration, not a map"), std::string::npos) << msg;
}

TEST(Identity, IgnoresKeyOrderAndNumberSpelling) {
  const auto a = parse(std::string("name: a\ndefaults: {x: 0.1, y: {p: 1, q: 2}}\n") + kStages);
  const auto b = parse(std::string("name: b\ndefaults: {y: {q: 2, p: 1}, x: 1e-1}\n") + kStages);
  EXPECT_EQ(a.trials[0].identity, b.trials[0].identity);
  EXPECT_EQ(a.trials[0].identity.size(), 64u);
}

TEST(Identity, ChangesWithAnyValueAndWithQuotedVersusPlain) {
  const auto a = parse(std::string("name: a\ndefaults: {x: 0.1}\n") + kStages);
  const auto b = parse(std::string("name: a\ndefaults: {x: 0.2}\n") + kStages);
  const auto c = parse(std::string("name: a\ndefaults: {x: \"0.1\"}\n") + kStages);
  EXPECT_NE(a.trials[0].identity, b.trials[0].identity);
  EXPECT_NE(a.trials[0].identity, c.trials[0].identity);
}

TEST(Identity, IsTheSha256OfTheCanonicalResolvedJson) {
  const auto e = parse("name: a\ndefaults: {x: 1}\nstages:\n  - {name: t, algorithm: counter, steps: 3}\n");
  EXPECT_EQ(e.trials[0].resolved_json,
            R"({"config":{"x":1},"seed":42,"stages":[{"kind":"algorithm","name":"t","options":{"steps":3},"plugin":"counter"}]})");
  // sha256 of that exact text, computed independently with `printf '%s' '<json>' | sha256sum`.
  EXPECT_EQ(e.trials[0].identity, "6d3e98ced7d01e2cf591c6a6216310b8dba89b7933165f5eede6ce8965c1bd80");
}

// Found by fuzz/fuzz_spec: invalid UTF-8 in a value (a Latin-1 file, an -o value) made canonical_json's dump()
// throw a type_error past the ConfigError callers expect. It is written as U+FFFD in the identity's JSON.
TEST(Identity, InvalidUtf8InAValueIsWrittenAsTheReplacementCharacter) {
  const auto e = parse("name: a\ndefaults: {x: caf\xe9}\nstages:\n  - {name: t, algorithm: counter, note: \"\xff\"}\n");
  EXPECT_EQ(e.trials[0].resolved_json,
            "{\"config\":{\"x\":\"caf\xEF\xBF\xBD\"},\"seed\":42,\"stages\":[{\"kind\":\"algorithm\",\"name\":\"t\","
            "\"options\":{\"note\":\"\xEF\xBF\xBD\"},\"plugin\":\"counter\"}]}");
  const auto o = parse(std::string("name: a\ndefaults: {x: 1}\n") + kStages, {"x=\xc3"});  // from -o
  EXPECT_NE(o.trials[0].resolved_json.find("{\"x\":\"\xEF\xBF\xBD\"}"), std::string::npos) << o.trials[0].resolved_json;
}

// Found by fuzz/fuzz_spec: an empty key in grid, zip, include or exclude read past its list of parts.
TEST(Spec, AnEmptyKeyIsAnErrorNamingIt) {
  for (const std::string& section : {"grid: {\"\": [1, 2]}", "exclude: [{\"\": 1}]", "include: [{\"\": 1}]"}) {
    const std::string error = error_of("name: e\n" + section + "\n" + kStages);
    EXPECT_NE(error.find("exp.yaml:2:"), std::string::npos) << section << ": " << error;
    EXPECT_NE(error.find("'': empty part in a dotted key"), std::string::npos) << section << ": " << error;
  }
}

TEST(Interpolation, WholeValueKeepsTypeAndEmbeddedBecomesText) {
  const auto e = parse(R"(
name: i
vars: {root: /data, n: 3, list: [1, 2]}
defaults:
  path: ${root}/prefs.jsonl
  steps: ${n}
  both: ${list}
stages:
  - {name: train, algorithm: counter, steps: "${steps}", where: "${path}", s: "${seed}"}
)");
  const auto& cfg = e.trials[0].config;
  EXPECT_EQ(cfg["path"].Scalar(), "/data/prefs.jsonl");
  EXPECT_EQ(canonical_json(cfg["steps"]), "3");
  EXPECT_EQ(canonical_json(cfg["both"]), "[1,2]");
  EXPECT_EQ(e.trials[0].stages[0].options["where"].Scalar(), "/data/prefs.jsonl");
  EXPECT_EQ(canonical_json(e.trials[0].stages[0].options["s"]), "42");
}

TEST(Interpolation, ConfigurationMayReferToItselfAndToGridValues) {
  const auto e = parse(R"(
name: i
defaults: {train: {lr: 1}, eval: {lr: "${train.lr}"}}
grid: {train.lr: [2, 3]}
stages:
  - {name: t, algorithm: counter, lr: "${eval.lr}"}
)");
  EXPECT_EQ(e.trials[1].stages[0].options["lr"].Scalar(), "3");
}

TEST(Interpolation, EnvironmentVariables) {
  setenv("MMR_TEST_SPEC_VAR", "hello", 1);
  const auto e = parse(std::string("name: i\ndefaults: {g: \"${env:MMR_TEST_SPEC_VAR} world\"}\n") + kStages);
  // The reference is kept (a secret stays out of the configuration and identity); the stage reads the value.
  EXPECT_EQ(e.trials[0].config["g"].Scalar(), "${env:MMR_TEST_SPEC_VAR} world");
  EXPECT_EQ(resolve_env(e.trials[0].config)["g"].Scalar(), "hello world");
  setenv("MMR_TEST_SPEC_VAR", "bye", 1);
  EXPECT_EQ(parse(std::string("name: i\ndefaults: {g: \"${env:MMR_TEST_SPEC_VAR} world\"}\n") + kStages)
                .trials[0].identity, e.trials[0].identity);
  unsetenv("MMR_TEST_SPEC_VAR");
  try {
    resolve_env(e.trials[0].config);
    ADD_FAILURE() << "an unset variable resolved";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("'MMR_TEST_SPEC_VAR' is not set"), std::string::npos) << err.what();
  }
  const std::string msg = error_of(std::string("name: i\ndefaults:\n  g: ${env:MMR_TEST_UNSET_VAR_XYZ}\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:3:6: environment variable 'MMR_TEST_UNSET_VAR_XYZ' is not set"), std::string::npos)
      << msg;
}

TEST(Interpolation, UnknownVariableNamesPositionAndWhatExists) {
  const std::string msg = error_of(std::string("name: i\nvars: {a: 1}\ndefaults:\n  x: ${b}\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:4:6: unknown variable '${b}'; vars: a; configuration keys: x"), std::string::npos) << msg;
}

// Found by probing: an index with more digits than stoul takes ended in "runner: stoul", with no file or position;
// a seeds string that is not a list ended in yaml-cpp's own error, without the file.
TEST(Interpolation, AHugeListIndexIsAnUnknownVariableAndBadSeedsNameTheFile) {
  const std::string msg = error_of(std::string("name: i\nvars: {l: [1, 2]}\ndefaults:\n  x: ${l.99999999999999999999999}\n") +
                                   kStages);
  EXPECT_NE(msg.find("exp.yaml:4:6: unknown variable '${l.99999999999999999999999}'"), std::string::npos) << msg;
  const std::string seeds = error_of(std::string("name: i\nseeds: \"1]\"\n") + kStages);
  EXPECT_NE(seeds.find("exp.yaml:2:8: seeds: expected a list of integers, found '1]'"), std::string::npos) << seeds;
}

// Found by probing: an experiment named ".." wrote outside the results folder.
TEST(ExperimentName, MustBeOneFolderName) {
  for (const std::string name : {"..", ".", "a/b", "../up"}) {
    const std::string msg = error_of("name: \"" + name + "\"\n" + kStages);
    EXPECT_NE(msg.find("exp.yaml:1:7: name: '" + name + "' is not a folder name"), std::string::npos) << msg;
  }
  EXPECT_EQ(error_of(std::string("name: \"it's (2)\"\n") + kStages), "");
}

TEST(Interpolation, CyclesAreReported) {
  const std::string msg = error_of(std::string("name: i\nvars: {a: \"${b}\", b: \"${a}\"}\n") + kStages);
  EXPECT_NE(msg.find("reference cycle"), std::string::npos) << msg;
}

TEST(Interpolation, DoubleDollarEscapes) {
  const auto e = parse(std::string("name: i\ndefaults: {t: \"cost $${x}\"}\n") + kStages);
  EXPECT_EQ(e.trials[0].config["t"].Scalar(), "cost ${x}");
}

TEST(Overrides, SetVarsAndPathsAndGrid) {
  const std::string text = R"(
name: o
vars: {data: /a}
defaults: {train: {lr: 1}, p: "${data}"}
grid: {train.beta: [0.1, 0.2]}
stages:
  - {name: train, algorithm: counter, beta: "${train.beta}"}
)";
  const auto e = parse(text, {"data=/b", "defaults.train.lr=5", "grid.train.beta=[0.7]", "seeds=[3]"});
  ASSERT_EQ(e.trials.size(), 1u);
  EXPECT_EQ(e.trials[0].config["p"].Scalar(), "/b");
  EXPECT_EQ(e.trials[0].config["train"]["lr"].Scalar(), "5");
  EXPECT_EQ(e.trials[0].label, "train.beta=0.7 seed=3");
}

TEST(Overrides, UnknownVarAndMissingEqualsAreErrors) {
  const std::string text = std::string("name: o\nvars: {data: /a}\n") + kStages;
  const std::string msg = error_of(text, {"dta=/b"});
  EXPECT_NE(msg.find("-o 'dta=/b': exp.yaml has no var, stage or defaults key 'dta' (vars: data; stages: train; "
                     "defaults: (none))"), std::string::npos) << msg;
  EXPECT_NE(error_of(text, {"data"}).find("expected key=value"), std::string::npos);
}

// ---- A stage's option addressed directly: <stage>.<option> in grid, zip, include, exclude and -o -----------

const char* kTrainEval = R"(
stages:
  - name: train
    algorithm: counter
    lr: 1.0e-3
    steps: 3
    model: {plugin: llava, path: /m, lora_r: 8}
  - {name: eval, benchmark: line_bench, file: "${artifact:train/curve}"}
)";

TEST(StageOptions, GridOverAStageOptionSetsItWithoutADefaultsCopy) {
  const auto e = parse(std::string("name: s\ngrid: {train.lr: [5.0e-5, 5.0e-6]}\n") + kTrainEval);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"train.lr=5.0e-5", "train.lr=5.0e-6"}));
  const YAML::Node opts = e.trials[1].stages[0].options;
  EXPECT_EQ(opts["lr"].Scalar(), "5.0e-6");
  EXPECT_EQ(opts["steps"].Scalar(), "3");                   // the stage's other options are untouched
  EXPECT_EQ(canonical_json(e.trials[1].config), "{}");      // nothing went into the configuration
  EXPECT_EQ(e.trials[1].stages[1].options["file"].Scalar(), "${artifact:train/curve}");
  EXPECT_NE(e.trials[0].resolved_json.find(R"("lr":5e-05)"), std::string::npos) << e.trials[0].resolved_json;
  // The identity is that of the resolved configuration: the same as writing the value into the stage.
  std::string literal = std::string("name: s\n") + kTrainEval;
  literal.replace(literal.find("lr: 1.0e-3"), 10, "lr: 5e-5");
  EXPECT_EQ(e.trials[0].identity, parse(literal).trials[0].identity);
  EXPECT_NE(e.trials[0].identity, e.trials[1].identity);
}

TEST(StageOptions, OverrideSetsAStageOptionAndANestedPath) {
  const auto e = parse(std::string("name: s\n") + kTrainEval,
                       {"train.lr=5e-5", "train.model.lora_r=128", "train.model.dtype=bfloat16", "eval.limit=4"});
  ASSERT_EQ(e.trials.size(), 1u);
  EXPECT_EQ(e.trials[0].label, "");  // -o is the base of every trial, not a varied key
  const YAML::Node train = e.trials[0].stages[0].options;
  EXPECT_EQ(train["lr"].Scalar(), "5e-5");
  EXPECT_EQ(canonical_json(train["model"]), R"({"dtype":"bfloat16","lora_r":128,"path":"/m","plugin":"llava"})");
  EXPECT_EQ(e.trials[0].stages[1].options["limit"].Scalar(), "4");
  // The file's own nodes are not changed: a second parse without -o sees the values as written.
  EXPECT_EQ(parse(std::string("name: s\n") + kTrainEval).trials[0].stages[0].options["model"]["lora_r"].Scalar(), "8");
}

TEST(StageOptions, ZipIncludeAndExcludeAddressStageOptionsToo) {
  const auto e = parse(std::string(R"(name: s
grid: {train.model.lora_r: [8, 64]}
zip:
  - {train.lr: [1.0e-4, 5.0e-5], train.epochs: [1, 3]}
exclude:
  - {train.model.lora_r: 64, train.epochs: 1}
  - {train.model.path: /m, train.lr: 5.0e-5, train.model.lora_r: 8}   # path is not varied: compared as written
include:
  - {train.lr: 1, train.model.lora_r: 4}
)") + kTrainEval);
  EXPECT_EQ(labels(e), (std::vector<std::string>{"train.model.lora_r=8 train.lr=1.0e-4 train.epochs=1",
                                                  "train.model.lora_r=64 train.lr=5.0e-5 train.epochs=3",
                                                  "train.lr=1 train.model.lora_r=4"}));
  EXPECT_EQ(canonical_json(e.trials[1].stages[0].options["model"]), R"({"lora_r":64,"path":"/m","plugin":"llava"})");
  EXPECT_EQ(e.trials[1].stages[0].options["epochs"].Scalar(), "3");
}

TEST(StageOptions, ANestedPathCreatesMapsButNotBelowAScalar) {
  const auto e = parse(std::string("name: s\ngrid: {train.optimizer.betas: [[0.9, 0.99]]}\n") + kTrainEval);
  EXPECT_EQ(canonical_json(e.trials[0].stages[0].options["optimizer"]), R"({"betas":[0.9,0.99]})");
  const std::string msg = error_of(std::string("name: s\ngrid: {train.steps.x: [1]}\n") + kTrainEval);
  EXPECT_NE(msg.find("exp.yaml:2:8: 'train.steps.x': 'train.steps' is '3' in the options of stage 'train', not a map"),
            std::string::npos) << msg;
}

TEST(StageOptions, AStageAloneOrItsPluginIsNotAnOption) {
  std::string msg = error_of(std::string("name: s\n") + kTrainEval, {"train=3"});
  EXPECT_NE(msg.find("-o 'train=3': 'train' is a stage: name one of its options as train.<option> (written in the "
                     "file: lr, steps, model)"), std::string::npos) << msg;
  msg = error_of(std::string("name: s\ngrid: {train.algorithm: [dpo]}\n") + kTrainEval);
  EXPECT_NE(msg.find("exp.yaml:2:8: 'train.algorithm': a stage's algorithm is not an option"), std::string::npos) << msg;
}

TEST(StageOptions, OverridingAKeyTheGridVariesIsAnError) {
  const std::string msg = error_of(std::string("name: s\ngrid:\n  train.lr: [1, 2]\n") + kTrainEval, {"train.lr=3"});
  EXPECT_NE(msg.find("-o 'train.lr=3': 'train.lr' is varied at exp.yaml:3:3, which sets it in every trial; to run one "
                     "value use -o grid.train.lr=[...]"), std::string::npos) << msg;
  // The grid's own override is the road for that.
  EXPECT_EQ(labels(parse(std::string("name: s\ngrid:\n  train.lr: [1, 2]\n") + kTrainEval, {"grid.train.lr=[3]"})),
            (std::vector<std::string>{"train.lr=3"}));
}

TEST(StageOptions, UnknownStageOrVarNamesWhatExists) {
  const std::string text = std::string("name: s\nvars: {world: 60}\ndefaults: {data: {fraction: 1}}\n") + kTrainEval;
  const std::string msg = error_of(text, {"dpo.lr=5.0e-5"});
  EXPECT_NE(msg.find("-o 'dpo.lr=5.0e-5': exp.yaml has no var, stage or defaults key 'dpo' (vars: world; stages: "
                     "train, eval; defaults: data); -o <stage>.<option>=... sets a stage's option"),
            std::string::npos) << msg;
}

TEST(StageOptions, AStageCannotBeNamedLikeASection) {
  const std::string msg = error_of("name: s\nstages:\n  - {name: grid, algorithm: counter}\n");
  EXPECT_NE(msg.find("exp.yaml:3:5: stage name 'grid' is a section's name"), std::string::npos) << msg;
}

// A key whose first part is both a top-level key of defaults: and a stage name: defaults win.
const char* kAmbiguous = R"(name: a
defaults: {data: {fraction: 1.0}}
stages:
  - name: data
    dataset: synthetic
    rows: preference
    transforms: [{fraction: "${data.fraction}"}]
)";

TEST(StageOptions, WhenAKeyNamesADefaultsKeyAndAStageDefaultsWin) {
  const auto e = parse(std::string(kAmbiguous) + "grid: {data.fraction: [0.5, 1.0]}\n");
  EXPECT_EQ(labels(e), (std::vector<std::string>{"data.fraction=0.5", "data.fraction=1.0"}));
  EXPECT_EQ(e.trials[0].config["data"]["fraction"].Scalar(), "0.5");
  const YAML::Node opts = e.trials[0].stages[0].options;
  EXPECT_FALSE(opts["fraction"]);  // not the stage's option
  EXPECT_EQ(canonical_json(opts["transforms"]), R"([{"fraction":0.5}])");
  EXPECT_EQ(canonical_json(parse(kAmbiguous, {"data.fraction=0.25"}).trials[0].stages[0].options["transforms"]),
            R"([{"fraction":0.25}])");
}

TEST(StageOptions, AnAmbiguousKeyNothingReadsIsAnErrorNamingBoth) {
  const std::string expected =
      "'data.rows': 'data' is both a key of defaults: (exp.yaml:2:12) and a stage (exp.yaml:4:5); defaults win, so "
      "this sets the configuration value data.rows, but no ${...} refers to it. To set the stage's option directly, "
      "rename the defaults key 'data'";
  std::string msg = error_of(kAmbiguous, {"data.rows=sft"});
  EXPECT_EQ(msg.rfind("-o 'data.rows=sft': " + expected, 0), 0u) << msg;
  msg = error_of(std::string(kAmbiguous) + "grid:\n  data.rows: [sft]\n");
  EXPECT_EQ(msg.rfind("exp.yaml:9:3: " + expected, 0), 0u) << msg;
}

TEST(StageOptions, AVarWinsForOverridesWhenTheFileHasThatVar) {
  const auto e = parse(std::string("name: s\nvars: {train: {lr: 1}}\n") + kTrainEval, {"train.lr=2", "train.steps=9"});
  EXPECT_EQ(e.trials[0].stages[0].options["lr"].Scalar(), "1.0e-3");     // train.lr is the var
  EXPECT_EQ(e.trials[0].stages[0].options["steps"].Scalar(), "9");       // train.steps is no var: the stage's
}

TEST(SpecErrors, YamlSyntaxErrorHasLineAndColumn) {
  const std::string msg = error_of("name: x\ngrid: {a: [1, 2}\n");
  EXPECT_EQ(msg.rfind("exp.yaml:2:", 0), 0u) << msg;
  EXPECT_NE(msg.find("YAML syntax error"), std::string::npos) << msg;
}

TEST(SpecErrors, UnknownSectionListsTheKnownOnes) {
  const std::string msg = error_of(std::string("name: x\ngird: {a: [1]}\n") + kStages);
  EXPECT_NE(msg.find("exp.yaml:2:1: unknown section 'gird'; expected one of: name, description, vars, defaults, grid"),
            std::string::npos)
      << msg;
}

TEST(SpecErrors, MissingNameAndStages) {
  EXPECT_NE(error_of(kStages).find("expected 'name: <experiment name>'"), std::string::npos);
  EXPECT_NE(error_of("name: x\n").find("stages: expected a non-empty list"), std::string::npos);
}

TEST(SpecErrors, StageNeedsExactlyOnePluginKind) {
  const std::string msg = error_of("name: x\nstages:\n  - {name: a, algorithm: dpo, benchmark: pope}\n");
  EXPECT_NE(msg.find("exp.yaml:3:5: stage: expected exactly one of algorithm, benchmark, dataset"), std::string::npos)
      << msg;
}

TEST(SpecErrors, DuplicateStageNames) {
  const std::string msg = error_of("name: x\nstages:\n  - {algorithm: dpo}\n  - {algorithm: dpo}\n");
  EXPECT_NE(msg.find("exp.yaml:4:5: stage name 'dpo' is used twice"), std::string::npos) << msg;
}

TEST(SpecErrors, ArtifactReferenceMustNameAnEarlierStage) {
  const std::string msg = error_of(R"(name: x
stages:
  - {name: eval, benchmark: pope, adapter: "${artifact:train/adapter}"}
  - {name: train, algorithm: dpo}
)");
  EXPECT_NE(msg.find("exp.yaml:3:44: '${artifact:train/adapter}': no earlier stage is named 'train'"), std::string::npos)
      << msg;
}

TEST(RuntimeReferences, AreKeptUntilTheStageRunsThenResolved) {
  const auto e = parse(R"(name: x
stages:
  - {name: train, algorithm: counter}
  - {name: eval, benchmark: line_bench, file: "${artifact:train/curve}", dir: "${trial:dir}/x"}
)");
  const YAML::Node opts = e.trials[0].stages[1].options;
  EXPECT_EQ(opts["file"].Scalar(), "${artifact:train/curve}");
  const YAML::Node resolved = resolve_runtime(opts, [](const std::string& ns, const std::string& key) {
    return ns == "artifact" ? "/r/" + key : std::string("/trial");
  });
  EXPECT_EQ(resolved["file"].Scalar(), "/r/train/curve");
  EXPECT_EQ(resolved["dir"].Scalar(), "/trial/x");
  EXPECT_EQ(opts["file"].Scalar(), "${artifact:train/curve}");  // the spec itself is untouched
}

TEST(SpecDocument, TrialConfigurationsDoNotShareState) {
  // yaml-cpp nodes alias on assignment; setting one trial's value must not leak into another's or the defaults.
  const auto e = parse(std::string("name: x\ndefaults: {a: {b: 0, c: 1}}\ngrid: {a.b: [1, 2]}\n") + kStages);
  EXPECT_EQ(e.trials[0].config["a"]["b"].Scalar(), "1");
  EXPECT_EQ(e.trials[1].config["a"]["b"].Scalar(), "2");
  EXPECT_EQ(e.trials[0].config["a"]["c"].Scalar(), "1");
}

// ---- when: stages that are part of some trials only ---------------------------------------------------------

const char* kMethods = R"(
name: m
defaults: {method: sft}
zip:
  - {method: [sft, dpo], train.lr: [0.4, 0.05]}
stages:
  - {name: data, dataset: rows}
  - {name: train, when: {method: sft}, algorithm: sft, data: "${artifact:data/rows}"}
  - {name: train, when: {method: [dpo, ipo]}, algorithm: dpo, beta: 0.1, data: "${artifact:data/rows}"}
  - {name: eval, benchmark: pope, adapter: "${artifact:train/adapter}"}
)";

TEST(When, AlternativesOfOneStepShareTheNameAndEachTrialGetsItsOwn) {
  const Experiment e = parse(kMethods);
  ASSERT_EQ(e.trials.size(), 2u);
  ASSERT_EQ(e.trials[0].stages.size(), 3u);
  EXPECT_EQ(e.trials[0].stages[1].plugin, "sft");
  EXPECT_EQ(e.trials[1].stages[1].plugin, "dpo");
  // The zip's train.lr is written into whichever alternative the trial runs.
  EXPECT_EQ(e.trials[0].stages[1].options["lr"].as<double>(), 0.4);
  EXPECT_EQ(e.trials[1].stages[1].options["lr"].as<double>(), 0.05);
  EXPECT_FALSE(e.trials[0].stages[1].options["beta"]);
  EXPECT_EQ(e.trials[1].stages[2].options["adapter"].as<std::string>(), "${artifact:train/adapter}");
}

TEST(When, LeavesOutStagesOfOtherMethodsAndKeepsIdentitiesOfFilesWithoutIt) {
  // A stage without `when:` is in every trial, and the trial's identity does not mention `when`.
  const Experiment plain = parse(std::string("name: m\n") + kStages);
  const Experiment with = parse(std::string("name: m\ndefaults: {method: sft}\nstages:\n"
                                            "  - {name: train, algorithm: counter}\n"
                                            "  - {name: extra, when: {method: dpo}, algorithm: counter}\n"));
  ASSERT_EQ(with.trials.size(), 1u);
  EXPECT_EQ(with.trials[0].stages.size(), 1u);
  EXPECT_EQ(with.trials[0].resolved_json.find("when"), std::string::npos);
  EXPECT_EQ(plain.trials[0].stages.size(), 1u);
}

TEST(When, ErrorsNameTheProblem) {
  EXPECT_NE(error_of("name: m\nstages:\n  - {name: t, algorithm: a}\n  - {name: t, when: {x: 1}, algorithm: b}\n")
                .find("stage name 't' is used twice"), std::string::npos);
  EXPECT_NE(error_of("name: m\ndefaults: {x: 1}\nstages:\n  - {name: t, when: {x: 1}, algorithm: a}\n"
                     "  - {name: t, when: {x: [1, 2]}, algorithm: b}\n")
                .find("two alternatives of stage 't' apply to the trial"), std::string::npos);
  const std::string nokey = error_of("name: m\nstages:\n  - {name: t, when: {nokey: 1}, algorithm: a}\n");
  EXPECT_NE(nokey.find("exp.yaml:3:22: when: 'nokey' is not a key of the trial's configuration"), std::string::npos)
      << nokey;
  EXPECT_NE(error_of("name: m\nstages:\n  - {name: t, when: [1], algorithm: a}\n").find("when: expected a map"),
            std::string::npos);
  EXPECT_NE(error_of("name: m\ndefaults: {x: 2}\nstages:\n  - {name: t, when: {x: 1}, algorithm: a}\n"
                     "  - {name: u, algorithm: b, in: \"${artifact:t/rows}\"}\n")
                .find("stage 't' is not part of the trial"), std::string::npos);
}

TEST(When, OverrideOfASharedStageNameSetsEveryAlternative) {
  const Experiment e = parse(kMethods, {"train.epochs=2"});
  ASSERT_EQ(e.trials.size(), 2u);
  EXPECT_EQ(e.trials[0].stages[1].options["epochs"].as<int>(), 2);
  EXPECT_EQ(e.trials[1].stages[1].options["epochs"].as<int>(), 2);
}

TEST(SpecDocument, ReportSectionIsAcceptedAndTakesNoPartInTrials) {
  const Experiment a = parse(std::string("name: m\n") + kStages);
  const Experiment b = parse(std::string("name: m\nreport: {tables: [{title: T, rows: x}]}\n") + kStages);
  EXPECT_EQ(a.trials[0].identity, b.trials[0].identity);
}

TEST(Ranks, RanksAndDevicesSayHowAStageRunsNotWhatItComputes) {
  const Experiment plain = parse("name: m\nstages:\n  - {name: t, algorithm: a, lr: 1}\n");
  const Experiment two = parse("name: m\nstages:\n  - {name: t, algorithm: a, lr: 1, ranks: 2}\n");
  const Experiment gpus = parse("name: m\nstages:\n  - {name: t, algorithm: a, lr: 1}\n", {"t.devices=[2, 3, 5]"});
  EXPECT_EQ(plain.trials[0].stages[0].ranks, 1);
  EXPECT_EQ(two.trials[0].stages[0].ranks, 2);
  EXPECT_EQ(gpus.trials[0].stages[0].ranks, 3);
  EXPECT_EQ(gpus.trials[0].stages[0].devices, (std::vector<std::string>{"2", "3", "5"}));
  // Not plugin options, and not part of the trial's identity: N ranks train as one process.
  EXPECT_FALSE(two.trials[0].stages[0].options["ranks"]);
  EXPECT_FALSE(gpus.trials[0].stages[0].options["devices"]);
  EXPECT_EQ(two.trials[0].identity, plain.trials[0].identity);
  EXPECT_EQ(gpus.trials[0].identity, plain.trials[0].identity);
}

TEST(Ranks, BadValuesNameTheProblem) {
  EXPECT_NE(error_of("name: m\nstages:\n  - {name: t, algorithm: a, ranks: 0}\n").find("ranks: expected a number"),
            std::string::npos);
  EXPECT_NE(error_of("name: m\nstages:\n  - {name: t, algorithm: a, devices: []}\n").find("devices: expected a non-empty"),
            std::string::npos);
  EXPECT_NE(error_of("name: m\nstages:\n  - {name: t, algorithm: a, devices: [0, 1], ranks: 3}\n")
                .find("ranks: 3 but devices lists 2"), std::string::npos);
}

// A grid that would expand to more trials than max_trials (10,000 unless the file says) is refused with the count,
// before its points are made: a billion here, which would not fit in memory.
TEST(GridExpansion, AGridBeyondMaxTrialsIsRefusedWithItsSizeBeforeItIsMade) {
  std::string values = "[";
  for (int i = 0; i < 1000; ++i) values += (i ? ", " : "") + std::to_string(i);
  values += "]";
  const std::string stages = "stages:\n  - {name: s, algorithm: sft, a: 0, b: 0, c: 0}\n";
  const std::string huge = "name: e\ngrid: {s.a: " + values + ", s.b: " + values + ", s.c: " + values + "}\n" + stages;
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err = error_of(huge);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_NE(err.find("exp.yaml:2:"), std::string::npos) << err;
  EXPECT_NE(err.find("expands to 1000000000 trials (1000 (s.a) x 1000 (s.b) x 1000 (s.c) x 1 seed(s)"),
            std::string::npos) << err;
  // Six trials (3 x 2 seeds) against a limit of 4, from the file or -o; 10 lets them through.
  const std::string small = "name: e\nseeds: [1, 2]\nmax_trials: 4\ngrid: {s.a: [1, 2, 3]}\n" + stages;
  EXPECT_NE(error_of(small).find("expands to 6 trials"), std::string::npos) << error_of(small);
  EXPECT_EQ(parse(small, {"max_trials=10"}).trials.size(), 6u);
  EXPECT_NE(error_of(small, {"max_trials=0"}).find("max_trials: expected a positive whole number"), std::string::npos);
}

// Expansion bombs end in an error naming the cause, in well under a second: YAML aliases nested ten deep (10^12
// values), and vars that each refer to the next twice (2^40 copies of a text; and with an empty text, 2^30
// substitutions that build nothing).
TEST(Spec, ExpansionBombsAreRefusedBeforeTheyExpand) {
  std::string aliases = "name: e\nvars:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 12; ++i) {
    aliases += "  a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) aliases += (k ? ", *a" : "*a") + std::to_string(i - 1);
    aliases += "]\n";
  }
  aliases += "stages:\n  - {name: s, algorithm: sft}\n";
  auto doubling = [](int levels, const std::string& leaf) {
    std::string t = "name: e\nvars:\n";
    for (int i = 0; i < levels; ++i)
      t += "  v" + std::to_string(i) + ": \"${v" + std::to_string(i + 1) + "}${v" + std::to_string(i + 1) + "}\"\n";
    t += "  v" + std::to_string(levels) + ": \"" + leaf + "\"\nstages:\n  - {name: s, algorithm: sft, a: \"${v0}\"}\n";
    return t;
  };
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(error_of(aliases).find("expands to more than 1000000 values"), std::string::npos) << error_of(aliases);
  EXPECT_NE(error_of(doubling(30, "0123456789")).find("expands to a text of more than 1048576 bytes"),
            std::string::npos) << error_of(doubling(30, "0123456789"));
  EXPECT_NE(error_of(doubling(30, "")).find("more than 1000000 ${...} substitutions"), std::string::npos)
      << error_of(doubling(30, ""));
  // Expanded, the bombs would run for hours or exhaust memory; refused, they take ~2 s on a 2-core machine, ~9 s under
  // AddressSanitizer at -O1 beside other tests (tools/sanitize.sh), hence the sanitized bound.
#ifdef __SANITIZE_ADDRESS__
  constexpr double kBoundSeconds = 60.0;
#else
  constexpr double kBoundSeconds = 10.0;
#endif
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), kBoundSeconds);
  // Legitimate sharing stays fine: a var used many times, an alias used twice.
  EXPECT_EQ(parse(doubling(8, "ab")).trials.size(), 1u);
}
