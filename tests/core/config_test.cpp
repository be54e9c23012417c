// Experiment files: validation messages at the right place, grid expansion, canonical identity.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/experiment/experiment.h"
#include "core/experiment/training_device.h"
#include "lory/core/build_info.h"
#include "test_support.h"

namespace lory {
namespace {

namespace fs = std::filesystem;
using testing::test_data_dir;

ParamSpec int_spec(const std::string& name, int64_t value, double lo, double hi) {
  return {name, ParamType::Int, ParamValue(value), lo, hi, {}, "test parameter"};
}

// A catalog standing in for the real plugins, so that these tests pin the harness's behaviour,
// not the plugins' current parameter lists.
const StaticPluginCatalog& fake_catalog() {
  static const StaticPluginCatalog catalog = [] {
    StaticPluginCatalog c;
    c.add({PluginKind::Router,
           "dense",
           "dense",
           "dense.so",
           1,
           "",
           1,
           "none",
           ParamSchema(),
           {},
           {}});
    c.add({PluginKind::Router,
           "lory",
           "lory",
           "lory.so",
           1,
           "",
           1,
           "none",
           ParamSchema({int_spec("experts", 8, 1, 256), int_spec("segment_length", 256, 1, 65536),
                        ParamSpec{"first_segment",
                                  ParamType::String,
                                  ParamValue(std::string("paper")),
                                  -HUGE_VAL,
                                  HUGE_VAL,
                                  {"paper", "uniform", "exclude"},
                                  "first segment rule"}}),
           {},
           {}});
    // topk also declares `experts`, after lory: a misplaced router.experts must name the plugin
    // the section selects, not the first that declares it.
    c.add({PluginKind::Router,
           "topk",
           "topk",
           "topk.so",
           1,
           "",
           1,
           "none",
           ParamSchema({int_spec("k", 2, 1, 64), int_spec("experts", 8, 1, 256)}),
           [](const ParamValues& p) {
             std::vector<ParamProblem> problems;
             if (p.get_int("k") > p.get_int("experts"))
               problems.push_back({"k", "k exceeds experts"});
             return problems;
           },
           {}});
    c.add({PluginKind::Batcher,
           "random",
           "random",
           "random.so",
           1,
           "",
           1,
           "none",
           ParamSchema(),
           {},
           {}});
    c.add({PluginKind::Model,
           "transformer",
           "transformer",
           "transformer.so",
           1,
           "",
           1,
           "none",
           ParamSchema({int_spec("d_model", 128, 8, 65536), int_spec("n_heads", 4, 1, 1024),
                        int_spec("n_layers", 4, 1, 1024)}),
           {},
           {}});
    return c;
  }();
  return catalog;
}

std::string load_errors(const std::string& path) {
  try {
    load_experiment(path, fake_catalog());
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

struct Expectation {
  std::string file_suffix;
  int line, column;
  std::string text;
};

// "# expect: [FILE:]LINE:COL: text" header lines of a case file.
std::vector<Expectation> read_expectations(const fs::path& path) {
  std::vector<Expectation> out;
  std::ifstream in(path);
  std::string line;
  const std::regex pattern(R"(^# expect: (?:([A-Za-z0-9_.]+):)?(\d+):(\d+): (.*)$)");
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, pattern)) continue;
    out.push_back({m[1].matched ? m[1].str() : path.filename().string(), std::stoi(m[2]),
                   std::stoi(m[3]), m[4]});
  }
  return out;
}

TEST(ExperimentValidation, EveryInvalidFileReportsItsExpectedErrorsAtTheRightPlace) {
  const fs::path dir = fs::path(test_data_dir()) / "config" / "invalid";
  int cases = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto expectations = read_expectations(entry.path());
    ASSERT_FALSE(expectations.empty()) << entry.path() << " has no '# expect:' line";
    const std::string report = load_errors(entry.path().string());
    ASSERT_FALSE(report.empty()) << entry.path() << " loaded without error";
    for (const Expectation& e : expectations) {
      const std::string located = fmt::format("{}:{}:{}: error: ", e.file_suffix, e.line, e.column);
      bool found = false;
      std::istringstream lines(report);
      std::string line;
      while (std::getline(lines, line)) {
        const auto at = line.find(located);
        if (at != std::string::npos && line.find(e.text, at) != std::string::npos) found = true;
      }
      EXPECT_TRUE(found) << "case " << entry.path().filename() << ": expected \"" << located
                         << "..." << e.text << "\" in:\n"
                         << report;
    }
    ++cases;
  }
  EXPECT_GE(cases, 25);
}

// The nesting guard counts the dots of keys only: decimal points of a long multi-line array, or
// dots in a comment, are not nesting.
TEST(ConfigReader, DecimalPointsAndCommentsAreNotNesting) {
  std::string numbers;
  for (int i = 0; i < 40; ++i) numbers += fmt::format("{}.5, ", i);
  const std::string text =
      "[experiment]\nname = \"t\"  # "
      "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f\n"
      "[grid.product]\nx = [\n  " +
      numbers + "\n  [" + numbers + "],\n]\n";
  Diagnostics diagnostics;
  const ConfigNode tree = parse_toml_text(text, "numbers.toml", diagnostics);
  EXPECT_TRUE(diagnostics.empty()) << diagnostics.format();
  ASSERT_TRUE(tree.find_path("grid.product.x"));
  EXPECT_EQ(tree.find_path("grid.product.x")->children().size(), 41u);
}

TEST(ExperimentValidation, AllErrorsOfAFileAreReportedAtOnce) {
  const std::string report = load_errors(
      (fs::path(test_data_dir()) / "config/invalid/several_errors_reported_together.toml")
          .string());
  EXPECT_NE(report.find("4 errors"), std::string::npos) << report;
}

Experiment load_valid(const std::string& name) {
  return load_experiment((fs::path(test_data_dir()) / "config/valid" / name).string(),
                         fake_catalog());
}

TEST(GridExpansion, CellsTimesProductTimesZipTimesSeeds) {
  const Experiment e = load_valid("full_grid.toml");
  ASSERT_EQ(e.cells.size(), 2u * 2u * 2u * 3u);
  std::set<std::string> identities;
  for (const auto& cell : e.cells) identities.insert(cell.identity);
  EXPECT_EQ(identities.size(), e.cells.size());
  // Zipped keys vary together: d_model 32 always has 2 heads, 64 always 4.
  for (const auto& cell : e.cells) {
    const auto& model = cell.config.section("model").plugin_params;
    EXPECT_EQ(model.get_int("n_heads"), model.get_int("d_model") == 32 ? 2 : 4);
  }
  // Innermost axis: seeds; outermost: the explicit cells.
  EXPECT_EQ(e.cells[0].config.section("trainer").values.get_int("seed"), 1);
  EXPECT_EQ(e.cells[1].config.section("trainer").values.get_int("seed"), 2);
  EXPECT_EQ(e.cells[0].config.section("router").plugin(), "dense");
  EXPECT_EQ(e.cells.back().config.section("router").plugin(), "lory");
  EXPECT_EQ(e.cells.back().config.section("router").plugin_params.get_int("experts"), 4);
  EXPECT_EQ(e.cells[0].label, "dense lr=0.001 d_model=32 n_heads=2 seed=1");
}

TEST(GridExpansion, IncludedBaseIsOverriddenByTheIncludingFile) {
  const Experiment e = load_valid("full_grid.toml");
  const auto& cell = e.cells.front().config;
  EXPECT_EQ(cell.section("model").values.get_int("context_length"), 64);  // from the base
  EXPECT_EQ(cell.section("trainer").values.get_int("steps"), 100);        // from the base
  EXPECT_EQ(e.description, "from the base");
  EXPECT_EQ(cell.section("router").plugin_params.all().size(), 0u);  // dense: no parameters
  EXPECT_EQ(cell.section("data").values.get_string("corpus"), "corpus");
  // The included file is recorded with its text (the store keeps it in experiment_files).
  ASSERT_EQ(e.included_files.size(), 1u);
  EXPECT_EQ(fs::path(e.included_files[0].first).filename(), "base.toml");
  EXPECT_TRUE(fs::path(e.included_files[0].first).is_absolute());
  EXPECT_NE(e.included_files[0].second.find("from the base"), std::string::npos);
}

TEST(GridExpansion, DefaultsAreFilledFromTheSchemas) {
  const Experiment e = load_valid("full_grid.toml");
  const auto& lory = e.cells.back().config.section("router").plugin_params;
  EXPECT_EQ(lory.get_int("segment_length"), 256);
  EXPECT_EQ(lory.get_string("first_segment"), "paper");
  EXPECT_EQ(e.cells.back().config.section("trainer").values.get_float("beta2"), 0.95);
}

TEST(GridExpansion, CellsWhoseResolvedConfigsAgreeAreMergedIntoOne) {
  const Experiment e = load_valid("dense_cells_merge.toml");
  EXPECT_EQ(e.cells.size(), 3u);  // dense once, lory with 4 and with 8 experts
  EXPECT_EQ(e.merged_duplicates, 1u);
  const auto varying = e.varying_keys();
  EXPECT_NE(std::find(varying.begin(), varying.end(), "router.plugin"), varying.end());
}

TEST(CellIdentity, IgnoresKeyOrderWhitespaceAndIntegerVersusFloatSpelling) {
  const Experiment a = load_valid("ordered_a.toml");
  const Experiment b = load_valid("ordered_b.toml");
  ASSERT_EQ(a.cells.size(), 1u);
  ASSERT_EQ(b.cells.size(), 1u);
  EXPECT_EQ(a.cells[0].identity, b.cells[0].identity);
  EXPECT_EQ(a.cells[0].config.canonical_json(), b.cells[0].config.canonical_json());
}

TEST(CellIdentity, ChangesWithEveryValue) {
  const Experiment a = load_valid("ordered_a.toml");
  const CellConfig& base = a.cells[0].config;
  const std::string base_identity = base.identity();
  int checked = 0;
  for (const auto& [section_name, section] : base.sections) {
    for (bool plugin_params : {false, true}) {
      const ParamValues& values = plugin_params ? section.plugin_params : section.values;
      for (const auto& [name, value] : values.all()) {
        CellConfig changed = base;
        ParamValues& target = plugin_params ? changed.section(section_name).plugin_params
                                            : changed.section(section_name).values;
        if (std::holds_alternative<bool>(value)) target.set(name, !std::get<bool>(value));
        if (std::holds_alternative<int64_t>(value)) target.set(name, std::get<int64_t>(value) + 1);
        if (std::holds_alternative<double>(value))
          target.set(name, std::get<double>(value) * 1.5 + 1e-9);
        if (std::holds_alternative<std::string>(value))
          target.set(name, std::get<std::string>(value) + "x");
        EXPECT_NE(changed.identity(), base_identity) << section_name << "." << name;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 20);
}

// trainer.precision and trainer.device came after cells had been trained: at the values those cells
// ran with (fp32, cpu) a cell keeps the identity it had without the keys; any other value is a
// new cell.
TEST(CellIdentity, OptionsAddedLaterKeepEarlierIdentitiesAtTheirFirstValues) {
  const CellConfig base = load_valid("ordered_a.toml").cells[0].config;
  ASSERT_EQ(base.section("trainer").values.get_string("precision"), "fp32");
  ASSERT_EQ(base.section("trainer").values.get_string("device"), "cpu");
  nlohmann::json without = nlohmann::json::parse(base.canonical_json());
  without["trainer"].erase("precision");
  without["trainer"].erase("device");
  EXPECT_EQ(CellConfig::from_json(without.dump()).identity(), base.identity());
  CellConfig bf16 = base;
  bf16.section("trainer").values.set("precision", std::string("bf16"));
  EXPECT_NE(bf16.identity(), base.identity());
  CellConfig gpu = base;
  gpu.section("trainer").values.set("device", std::string("cuda"));
  EXPECT_NE(gpu.identity(), base.identity());
}

TEST(TrainingDevice, ParsesCpuCudaAndCudaNAndRefusesCudaWhereThisBuildHasNone) {
  EXPECT_FALSE(parse_training_device("cpu")->cuda);
  EXPECT_EQ(parse_training_device("cuda")->index, 0);
  EXPECT_EQ(parse_training_device("cuda:3")->index, 3);
  for (const char* bad : {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "cuda:99999"}) {
    EXPECT_FALSE(parse_training_device(bad)) << bad;
    EXPECT_NE(training_device_problem(bad).value_or("").find("is not a device"), std::string::npos)
        << bad;
  }
  EXPECT_FALSE(training_device_problem("cpu"));
  const auto cuda_problem = training_device_problem("cuda:1");
  if (LORY_TORCH_HAS_CUDA) {
    EXPECT_FALSE(cuda_problem);
  } else {
    ASSERT_TRUE(cuda_problem);
    EXPECT_NE(cuda_problem->find("needs CUDA, but the LibTorch this lory was built with has none"),
              std::string::npos);
  }
}

TEST(CellIdentity, CanonicalJsonRoundTrips) {
  const Experiment e = load_valid("full_grid.toml");
  for (const auto& cell : e.cells) {
    const CellConfig parsed = CellConfig::from_json(cell.config.canonical_json());
    EXPECT_EQ(parsed.identity(), cell.identity);
  }
}

}  // namespace
}  // namespace lory
