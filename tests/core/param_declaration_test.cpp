// lory::ParamDeclaration: one typed declaration gives the C parameter table, the reading into an
// options struct, the rules and the export JSON; and the balance metrics' definitions.
#include "lory/core/param_declaration.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/support/progress_line.h"
#include "lory/core/routing_summary.h"

namespace lory {
namespace {

enum class Mode { Fast, Exact };

struct Options {
  int64_t width = 0, depth = 0;
  double rate = 0;
  bool on = false;
  std::string name;
  Mode mode = Mode::Fast;
};

const ParamDeclaration<Options>& declaration() {
  static const auto d =
      ParamDeclaration<Options>("router.example")
          .integer("width", &Options::width, 16, 1, 64, "w")
          .integer("depth", &Options::depth, 2, 1, 8, "d")
          .real("rate", &Options::rate, 0.02, 0, 1, "r")
          .flag("on", &Options::on, true, "o")
          .text("name", &Options::name, "abc", nullptr, "n")
          .choice("mode", &Options::mode, {{"fast", Mode::Fast}, {"exact", Mode::Exact}},
                  Mode::Exact, "m")
          .rule([](const Options& o) -> std::vector<ParamProblem> {
            if (o.depth > o.width) return {{"depth", "depth exceeds width"}};
            return {};
          });
  return d;
}

TEST(ParamDeclaration, TheCTableCarriesNamesTypesDefaultsRangesAndChoices) {
  const auto& d = declaration();
  ASSERT_EQ(d.spec_count(), 6u);
  const LoryParamSpec* s = d.specs();
  EXPECT_STREQ(s[0].name, "width");
  EXPECT_EQ(s[0].type, LORY_PARAM_INT);
  EXPECT_STREQ(s[0].default_value, "16");
  EXPECT_EQ(s[0].min_value, 1);
  EXPECT_EQ(s[0].max_value, 64);
  EXPECT_STREQ(s[2].default_value, "0.02");  // shortest round-trip text
  EXPECT_EQ(s[3].type, LORY_PARAM_BOOL);
  EXPECT_STREQ(s[3].default_value, "true");
  EXPECT_EQ(s[4].choices, nullptr);
  EXPECT_EQ(s[5].type, LORY_PARAM_STRING);
  EXPECT_STREQ(s[5].choices, "fast|exact");
  EXPECT_STREQ(s[5].default_value, "exact");
  EXPECT_STREQ(s[5].doc, "m");
}

TEST(ParamDeclaration, ReadsValuesIntoTheStructAndWritesThemBackAsJson) {
  const auto& d = declaration();
  ParamValues values = d.defaults();
  Options o = d.read(values);
  EXPECT_EQ(o.width, 16);
  EXPECT_EQ(o.depth, 2);
  EXPECT_DOUBLE_EQ(o.rate, 0.02);
  EXPECT_TRUE(o.on);
  EXPECT_EQ(o.name, "abc");
  EXPECT_EQ(o.mode, Mode::Exact);
  EXPECT_EQ(d.to_json(o).dump(),
            R"({"depth":2,"mode":"exact","name":"abc","on":true,"rate":0.02,"width":16})");
  values.set("mode", std::string("fast"));
  values.set("width", int64_t{32});
  o = d.read(values);
  EXPECT_EQ(o.mode, Mode::Fast);
  EXPECT_EQ(d.to_json(o)["mode"], "fast");
  EXPECT_EQ(d.to_json(o)["width"], 32);
}

TEST(ParamDeclaration, RulesAreReportedAtValidationAndRefusedOnReading) {
  const auto& d = declaration();
  ParamValues values = d.defaults();
  values.set("depth", int64_t{8});
  values.set("width", int64_t{4});
  const std::vector<ParamProblem> problems = d.problems(values);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems[0].key, "depth");
  try {
    d.read(values);
    FAIL() << "a broken rule must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "router.example: depth exceeds width");
  }
  values.set("depth", int64_t{2});
  values.set("mode", std::string("slow"));
  EXPECT_THROW(d.read(values), std::invalid_argument);
}

TEST(ParamDeclaration, ADeclarationMistakeIsCaughtWhenItIsMade) {
  EXPECT_THROW((ParamDeclaration<Options>("t")
                    .integer("a", &Options::width, 1, 0, 2, "")
                    .integer("a", &Options::depth, 1, 0, 2, "")),
               std::logic_error);
  EXPECT_THROW((ParamDeclaration<Options>("t").choice("mode", &Options::mode,
                                                      {{"fast", Mode::Fast}}, Mode::Exact, "")),
               std::logic_error);
}

TEST(BalanceMetrics, MaxViolationAndLoadPercentilesOnHandMadeLoads) {
  EXPECT_DOUBLE_EQ(max_violation({2, 2, 2, 2}), 0.0);
  EXPECT_DOUBLE_EQ(max_violation({4, 0, 2, 2}), 1.0);  // max 4 over mean 2
  EXPECT_DOUBLE_EQ(max_violation({0, 0}), 0.0);
  const std::vector<double> load = {0, 1, 2, 3, 4};  // mean 2
  EXPECT_DOUBLE_EQ(relative_load_percentile(load, 0), 0.0);
  EXPECT_DOUBLE_EQ(relative_load_percentile(load, 50), 1.0);
  EXPECT_DOUBLE_EQ(relative_load_percentile(load, 100), 2.0);
  EXPECT_DOUBLE_EQ(relative_load_percentile(load, 10), 0.4 / 2.0);  // rank 0.4: between 0 and 1
  EXPECT_DOUBLE_EQ(relative_load_percentile(load, 90), 3.6 / 2.0);
  EXPECT_DOUBLE_EQ(relative_load_percentile({3, 1}, 50), 1.0);  // unsorted input
}

// The progress line of long commands (embed, eval-tasks): count, share, elapsed time and ETA.
TEST(ProgressLine, PrintsCountShareAndAnEtaAtMostOncePerInterval) {
  ::testing::internal::CaptureStderr();
  {
    ProgressLine progress("embed: documents", 10, /*min_interval_s=*/0);
    progress.update(5);
  }
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(printed.find("embed: documents 5/10 (50%), 0s, ETA 0s"), std::string::npos) << printed;
  ::testing::internal::CaptureStderr();
  {
    ProgressLine quiet("eval-tasks: t examples", 10, /*min_interval_s=*/3600);
    quiet.update(5);  // within the interval: nothing
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace lory
