// The comparison report: the SQL views on a hand-built database, the specialisation score, and a
// report of a tiny real experiment with every section and figure.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <set>
#include <sstream>

#include <cmath>
#include <filesystem>

#include "core/store/results_store.h"
#include "lory/core/routing_summary.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::TempDir;

TEST(SpecialisationScore, IsZeroForRoutingThatIgnoresTheDomainAndOneWhenTheDomainDeterminesIt) {
  EXPECT_NEAR(specialisation_score(
                  {{0.25, 0.25, 0.25, 0.25}, {0.25, 0.25, 0.25, 0.25}, {0.25, 0.25, 0.25, 0.25}}),
              0, 1e-12);
  EXPECT_NEAR(specialisation_score({{0.7, 0.1, 0.2}, {7.0, 1.0, 2.0}}), 0,
              1e-12);  // same mix, different amounts
  EXPECT_NEAR(specialisation_score({{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}), 1,
              1e-12);
  EXPECT_NEAR(specialisation_score({{5, 0}, {0, 3}, {2, 0}}), 1,
              1e-12);  // two domains share an expert
  const double partial = specialisation_score({{0.8, 0.2}, {0.2, 0.8}});
  EXPECT_GT(partial, 0.2);
  EXPECT_LT(partial, 0.4);
  EXPECT_EQ(specialisation_score({{1.0}, {2.0}}), 0);  // one expert: nothing to specialise
  EXPECT_DOUBLE_EQ(load_imbalance({{1, 1}, {1, 1}}), 1.0);
  EXPECT_DOUBLE_EQ(load_imbalance({{3, 0}, {1, 0}}), 2.0);
}

// Two seeds of dense and of lory; lory is 10% better on books in seed 1 and, by default, 20% in
// seed 2 (its perplexity there is `lory_seed2_ppl` against dense's 100).
// The baseline's router is `baseline_router`, which declares the dense_baseline role.
void build_database(const std::string& path, double lory_seed2_ppl = 80.0,
                    const std::string& baseline_router = "dense") {
  ResultsStore store(path);
  const int64_t experiment = store.upsert_experiment("views", "/x/views.toml", "", "");
  const auto config = [](const std::string& router, int seed) {
    return fmt::format(
        R"({{"data":{{"corpus":"c"}},"router":{{"plugin":"{}"}},"trainer":{{"seed":{}}}}})", router,
        seed);
  };
  for (int seed = 1; seed <= 2; ++seed) {
    const int64_t dense =
        store.ensure_run(experiment, fmt::format("d{}", seed), fmt::format("dense seed={}", seed),
                         config(baseline_router, seed), seed);
    // What `lory run` records from the plugin's declared roles (lory/core/router_roles.h).
    store.set_run_attribute(dense, "router_roles", "dense_baseline");
    const int64_t lory =
        store.ensure_run(experiment, fmt::format("l{}", seed), fmt::format("lory seed={}", seed),
                         config("lory", seed), seed);
    // An earlier evaluation that the views must ignore, then the final one.
    store.write_evals(
        dense, {{50, "books", "default", 100, 0, 999.0}, {100, "books", "default", 100, 0, 100.0}});
    store.write_evals(lory, {{50, "books", "default", 100, 0, 999.0},
                             {100, "books", "default", 100, 0, seed == 1 ? 90.0 : lory_seed2_ppl}});
    store.write_routing_stats(lory, {{50, "default", 0, "books", 0, 0.9, 1, 100},
                                     {100, "default", 0, "books", 0, 0.6, 1, 100},
                                     {100, "default", 0, "books", 1, 0.4, 0, 100}});
  }
}

// Schema 4: an MoE run whose upcycling recipe differs from the default pairs with the same dense
// run as the default one (a dense run ignores the dense warm-up and upcycling keys); a database
// of schema 3 is migrated to that rule when it is opened.
TEST(ResultViews, UpcyclingRecipeVariantsPairWithTheSameDenseRun) {
  TempDir dir;
  const std::string path = dir.file("r.sqlite");
  {
    ResultsStore store(path);
    const int64_t experiment = store.upsert_experiment("recipes", "/x/recipes.toml", "", "");
    // Back to schema 3, as a database written before this rule.
    store.database().exec(
        "DROP VIEW run_cells; DROP VIEW moe_vs_dense; DROP VIEW task_evals_over_seeds; DROP TABLE "
        "task_evals; DROP "
        "TABLE experiment_files; DELETE FROM schema_version WHERE version >= 4");
    store.database().exec(R"(CREATE VIEW moe_vs_dense AS
SELECT m.experiment, m.run_id, m.label, m.group_label, m.router, m.batcher, m.seed, fm.mode, fm.domain,
       fm.ppl AS moe_ppl, fd.ppl AS dense_ppl, d.run_id AS dense_run_id, (fd.ppl - fm.ppl) / fd.ppl AS relative_improvement
FROM run_cells m
JOIN run_cells d ON d.experiment = m.experiment AND d.router = 'dense' AND d.baseline_key = m.baseline_key
JOIN final_evals fm ON fm.run_id = m.run_id
JOIN final_evals fd ON fd.run_id = d.run_id AND fd.mode = fm.mode AND fd.domain = fm.domain
WHERE m.router != 'dense')");
    store.database().exec(R"(CREATE VIEW run_cells AS
SELECT r.id AS run_id, x.name AS experiment, r.label, r.status, r.seed, r.cell_hash,
       json_extract(r.config, '$.router.plugin') AS router, json_extract(r.config, '$.batcher.plugin') AS batcher,
       trim(replace(r.label, 'seed=' || r.seed, '')) AS group_label,
       json_remove(r.config, '$.trainer.seed') AS group_key, json_remove(r.config, '$.router') AS baseline_key
FROM runs r JOIN experiments x ON x.id = r.experiment_id)");
    const auto config = [](const std::string& router, const std::string& recipe) {
      return fmt::format(
          R"({{"router":{{"plugin":"{}"}},"trainer":{{"seed":1,"dense_warmup_fraction":0.05,)"
          R"("upcycling_optimizer":"{}"}}}})",
          router, recipe);
    };
    const int64_t dense = store.ensure_run(experiment, "d", "dense", config("dense", "reset"), 1);
    const int64_t reset = store.ensure_run(experiment, "r", "lory-8", config("lory", "reset"), 1);
    const int64_t copy =
        store.ensure_run(experiment, "c", "lory-8-copy", config("lory", "copy"), 1);
    store.write_evals(dense, {{10, "all", "default", 100, 0, 100.0}});
    store.write_evals(reset, {{10, "all", "default", 100, 0, 95.0}});
    store.write_evals(copy, {{10, "all", "default", 100, 0, 90.0}});
    EXPECT_EQ(store.database().query_int("SELECT count(*) FROM moe_vs_dense"),
              1);  // schema 3: copy has no pair
  }
  // Migrated to 4 (the pairing rule), 5, and 6, which gives the run of the router called "dense"
  // the dense_baseline role the views now pair by.
  ResultsStore migrated(path);
  EXPECT_EQ(migrated.database().query_int("SELECT max(version) FROM schema_version"), 6);
  EXPECT_EQ(migrated.database().query_int("SELECT count(*) FROM run_attributes WHERE name = "
                                          "'router_roles' AND value = 'dense_baseline'"),
            1);
  Statement pairs = migrated.database().prepare(
      "SELECT label, dense_run_id, relative_improvement FROM moe_vs_dense ORDER BY label");
  ASSERT_TRUE(pairs.step());
  EXPECT_EQ(pairs.column_text(0), "lory-8");
  EXPECT_EQ(pairs.column_int(1), 1);
  ASSERT_TRUE(pairs.step());
  EXPECT_EQ(pairs.column_text(0), "lory-8-copy");
  EXPECT_EQ(pairs.column_int(1), 1);
  EXPECT_NEAR(pairs.column_double(2), 0.10, 1e-12);
  EXPECT_FALSE(pairs.step());
}

// The baseline is whichever router declares the dense_baseline role, not the name "dense".
TEST(ResultViews, PairWithTheRouterDeclaringTheDenseBaselineRole) {
  TempDir dir;
  build_database(dir.file("r.sqlite"), 80.0, "my_baseline");
  {
    Database db(dir.file("r.sqlite"), Database::Mode::ReadOnly);
    EXPECT_EQ(db.query_int("SELECT count(*) FROM moe_vs_dense WHERE router = 'lory'"), 2);
    EXPECT_EQ(db.query_int("SELECT count(*) FROM moe_vs_dense WHERE router = 'my_baseline'"), 0);
  }
  // Without the role, a router called "dense" is just another router: nothing pairs.
  TempDir other;
  build_database(other.file("r.sqlite"));
  {
    ResultsStore(other.file("r.sqlite"))
        .database()
        .exec("DELETE FROM run_attributes WHERE name = 'router_roles'");
  }
  Database db(other.file("r.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM moe_vs_dense"), 0);
}

TEST(ResultViews, ReturnTheRightNumbersOnAHandBuiltDatabase) {
  TempDir dir;
  build_database(dir.file("r.sqlite"));
  Database db(dir.file("r.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM final_evals"), 4);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM final_evals WHERE ppl = 999"), 0);
  Statement pairs =
      db.prepare("SELECT seed, relative_improvement, dense_ppl FROM moe_vs_dense ORDER BY seed");
  ASSERT_TRUE(pairs.step());
  EXPECT_NEAR(pairs.column_double(1), 0.10, 1e-12);
  EXPECT_EQ(pairs.column_double(2), 100.0);
  ASSERT_TRUE(pairs.step());
  EXPECT_NEAR(pairs.column_double(1), 0.20, 1e-12);
  EXPECT_FALSE(pairs.step());
  Statement over_seeds = db.prepare(
      "SELECT ppl_mean, ppl_std, n FROM final_evals_over_seeds WHERE group_label = 'lory' AND "
      "domain = 'books'");
  ASSERT_TRUE(over_seeds.step());
  EXPECT_NEAR(over_seeds.column_double(0), 85.0, 1e-9);
  EXPECT_NEAR(over_seeds.column_double(1), std::sqrt(50.0), 1e-9);  // sample std of 90 and 80
  EXPECT_EQ(over_seeds.column_int(2), 2);
  Statement improvement =
      db.prepare("SELECT improvement_mean, improvement_std, n FROM moe_vs_dense_over_seeds");
  ASSERT_TRUE(improvement.step());
  EXPECT_NEAR(improvement.column_double(0), 0.15, 1e-12);
  EXPECT_NEAR(improvement.column_double(1), std::sqrt(0.005), 1e-12);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM expert_domain_matrix"),
            4);  // last step only, 2 runs x 2 experts
  EXPECT_EQ(db.query_int("SELECT count(*) FROM expert_domain_matrix WHERE weight_mean = 0.9"), 0);
}

TEST(LoryReport, DifferencesSmallerThanTheSeedSpreadAreFlagged) {
  const auto change_row = [](double lory_seed2_ppl) {
    TempDir dir;
    build_database(dir.file("r.sqlite"), lory_seed2_ppl);
    const auto reported = testing::run_command(fmt::format("{}/lory report views --out {} --db {}",
                                                           testing::build_dir(), dir.file("report"),
                                                           dir.file("r.sqlite")));
    EXPECT_EQ(reported.exit_code, 0) << reported.output;
    const std::string report = testing::read_text(dir.file("report/report.md"));
    const size_t section = report.find("## Change relative to the dense baseline");
    const size_t row = report.find("| lory |", section);
    EXPECT_NE(row, std::string::npos) << report;
    return std::make_pair(report.substr(row, report.find('\n', row) - row), report);
  };
  // +10% and +20%: mean +15.0% ± 7.1, larger than its spread.
  const auto [clear, clear_report] = change_row(80.0);
  EXPECT_NE(clear.find("+15.0% ± 7.1"), std::string::npos) << clear;
  EXPECT_EQ(clear.find("~"), std::string::npos) << clear;
  EXPECT_EQ(clear_report.find("~ marks a difference smaller than its spread"), std::string::npos);
  // +10% and -15%: mean -2.5% ± 17.7, inside the spread: flagged, and the flag explained.
  const auto [noise, noise_report] = change_row(115.0);
  EXPECT_NE(noise.find("-2.5% ± 17.7 ~"), std::string::npos) << noise;
  EXPECT_NE(noise_report.find("~ marks a difference smaller than its spread"), std::string::npos)
      << noise_report;
}

// The figures against tokens summarise seeds and pair runs as they say: on a hand-built database
// (dense, lory with 8 and 16 experts, lory-8 with similarity batching; two seeds; evaluations at
// steps 1 and 2 of 2 x 4 tokens), every point of their data files is checked against the gains
// computed here.
std::vector<std::vector<double>> figure_rows(const std::string& dat_file, const std::string& name) {
  std::istringstream in(testing::read_text(dat_file));
  std::vector<std::vector<double>> rows;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("# ", 0) == 0) {
      inside = line.find(name) == 2;
      continue;
    }
    if (!inside || line.empty()) continue;
    std::istringstream fields(line);
    std::vector<double> row;
    double value = 0;
    while (fields >> value) row.push_back(value);
    rows.push_back(row);
  }
  return rows;
}

TEST(LoryReport, FiguresAgainstTokensSummariseSeedsAndPairRuns) {
  TempDir dir;
  const std::string path = dir.file("r.sqlite");
  {
    ResultsStore store(path);
    const int64_t experiment = store.upsert_experiment("curves", "/x/curves.toml", "", "");
    const auto add = [&](const std::string& label, const std::string& router, int experts,
                         const std::string& batcher, int seed, double loss_1, double loss_2) {
      const std::string router_table =
          experts > 0 ? fmt::format(R"("lory":{{"experts":{}}},)", experts) : "";
      const std::string config = fmt::format(
          R"({{"batcher":{{"plugin":"{}"}},"data":{{"corpus":"c"}},"model":{{"context_length":4}},)"
          R"("router":{{{}"plugin":"{}"}},"trainer":{{"batch_size":2,"seed":{}}}}})",
          batcher, router_table, router, seed);
      const int64_t run = store.ensure_run(experiment, fmt::format("{}-{}", label, seed),
                                           fmt::format("{} seed={}", label, seed), config, seed);
      if (router == "dense") store.set_run_attribute(run, "router_roles", "dense_baseline");
      store.write_evals(run, {{1, "all", "default", 8, loss_1, std::exp(loss_1)},
                              {2, "all", "default", 8, loss_2, std::exp(loss_2)}});
      store.mark_finished(run, "done", "", 2);
    };
    for (int seed = 1; seed <= 2; ++seed) {
      add("dense", "dense", 0, "random", seed, 3.0, 2.0);
      add("lory-8", "lory", 8, "random", seed, 3.0, seed == 1 ? 1.9 : 1.8);
      add("lory-16", "lory", 16, "random", seed, 2.9, 1.7);
      add("dense similarity", "dense", 0, "similarity", seed, 3.0, 2.0);
      add("lory-8 similarity", "lory", 8, "similarity", seed, 3.0, seed == 1 ? 1.85 : 1.75);
    }
  }
  const std::string out = dir.file("report");
  const auto reported = testing::run_command(
      fmt::format("{}/lory report curves --out {} --db {}", testing::build_dir(), out, path));
  ASSERT_EQ(reported.exit_code, 0) << reported.output;
  const std::string report = testing::read_text(out + "/report.md");
  for (const char* section :
       {"## Held-out loss against training tokens", "### Gain over dense against training tokens",
        "### Gain over dense against the number of experts",
        "### Similarity batching against random batching"}) {
    EXPECT_NE(report.find(section), std::string::npos) << section << "\n" << report;
  }
  const auto gain = [](double loss, double dense) {
    return 100.0 * (1.0 - std::exp(loss - dense));
  };
  // Held-out loss against tokens (step x 2 x 4): lory-8's mean over its two seeds.
  const auto lory8 = figure_rows(out + "/heldout_loss.dat", "lory-8 (n=2)");
  ASSERT_EQ(lory8.size(), 2u);
  EXPECT_DOUBLE_EQ(lory8[1][0], 16);
  EXPECT_NEAR(lory8[1][1], 1.85, 1e-9);
  EXPECT_NEAR(lory8[1][2], std::sqrt(0.005), 1e-9);  // sample std of 1.9 and 1.8
  // Gain over dense, paired seed by seed: dense has no line of its own.
  EXPECT_TRUE(figure_rows(out + "/gain_over_dense.dat", "dense (n=").empty());
  const auto gains8 = figure_rows(out + "/gain_over_dense.dat", "lory-8 (n=2)");
  ASSERT_EQ(gains8.size(), 2u);
  EXPECT_NEAR(gains8[0][1], 0.0, 1e-9);
  const double g1 = gain(1.9, 2.0), g2 = gain(1.8, 2.0);
  EXPECT_NEAR(gains8[1][1], (g1 + g2) / 2, 1e-9);
  EXPECT_NEAR(gains8[1][2], std::abs(g1 - g2) / std::sqrt(2.0), 1e-9);
  // The final gain against E, for the cells that differ only in E (random batching).
  const auto by_experts = figure_rows(out + "/gain_by_experts.dat", "lory-8 / lory-16");
  ASSERT_EQ(by_experts.size(), 2u) << testing::read_text(out + "/gain_by_experts.dat");
  EXPECT_DOUBLE_EQ(by_experts[0][0], 8);
  EXPECT_NEAR(by_experts[0][1], (g1 + g2) / 2, 1e-9);
  EXPECT_DOUBLE_EQ(by_experts[1][0], 16);
  EXPECT_NEAR(by_experts[1][1], gain(1.7, 2.0), 1e-9);
  EXPECT_NEAR(by_experts[1][2], 0.0, 1e-9);
  // Similarity against random batching, paired with the run that differs only in the batcher.
  const auto similarity =
      figure_rows(out + "/similarity_gain.dat", "lory-8 similarity over random (n=2)");
  ASSERT_EQ(similarity.size(), 2u);
  EXPECT_NEAR(similarity[1][1], gain(1.85, 1.9), 1e-9);  // = gain(1.75, 1.8)
  EXPECT_NEAR(similarity[1][2], 0.0, 1e-9);
}

TEST(LoryReport, ATinyRealExperimentGetsEverySectionAndFigure) {
  TempDir dir;
  testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 40, 20, 80));
  std::string experiment = testing::tiny_experiment(
      "tiny-report", "steps = 16\nbatch_size = 4\nlr = 0.003\nlog_every = 2", "every = 8",
      "[router.lory]\nexperts = 4\nsegment_length = 8\n[grid]\nseeds = [1, 2]\n"
      "[[grid.cells]]\nrouter.plugin = \"dense\"\n[[grid.cells]]\nrouter.plugin = \"lory\"");
  // Three layers, so that the report has a lower, a middle and an upper layer to show.
  experiment.replace(experiment.find("n_layers = 2"), 12, "n_layers = 3");
  testing::write_text(dir.file("tiny.toml"), experiment);
  const std::string db = dir.file("r.sqlite");
  const auto trained = testing::run_command(fmt::format(
      "{}/lory run {} --db {} --jobs 2", testing::build_dir(), dir.file("tiny.toml"), db));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  const auto reported = testing::run_command(fmt::format(
      "{}/lory report tiny-report --out {} --db {}", testing::build_dir(), dir.file("report"), db));
  ASSERT_EQ(reported.exit_code, 0) << reported.output;
  const std::string report = testing::read_text(dir.file("report/report.md"));
  for (const char* section :
       {"## Held-out perplexity per domain", "## Change relative to the dense baseline",
        "## Held-out loss against training tokens", "### Gain over dense against training tokens",
        "## Training loss", "### Tokens to reach the dense model's final loss",
        "## Expert specialisation", "## Expert utilisation over training", "## Throughput",
        "## The same numbers with SQL", "router=lory"}) {
    EXPECT_NE(report.find(section), std::string::npos) << section << "\n" << report;
  }
  EXPECT_NE(report.find(" ± "), std::string::npos) << "two seeds: mean ± std expected";
  EXPECT_NE(report.find("| fraction | held-out fraction |"), std::string::npos) << report;
  // Throughput is relative to each run's paired dense run: the dense cell is its own pair, twice.
  EXPECT_NE(report.find("| cell | tokens/s | relative to paired dense | pairs |"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("| 1.000 | 2 |"), std::string::npos) << report;
  for (const char* figure :
       {"loss_curves.png", "utilisation.png", "routing_entropy.png", "heatmap_run3_layer0.png",
        "heatmap_run3_layer1.png", "heatmap_run3_layer2.png"}) {
    EXPECT_NE(report.find(figure), std::string::npos) << figure;
    const auto path = dir.file(std::string("report/") + figure);
    ASSERT_TRUE(std::filesystem::exists(path)) << figure;
    EXPECT_GT(std::filesystem::file_size(path), 2000u) << figure;
  }
  EXPECT_TRUE(std::filesystem::exists(dir.file("report/report.html")));
  // Lory routes by segments (segment_length 8): its runs record how often a segment follows one
  // of another document; the dense runs, which have no segments, do not.
  Database results(db, Database::Mode::ReadOnly);
  EXPECT_EQ(results
                .query_int("SELECT count(*) FROM run_attributes a JOIN runs r ON r.id = a.run_id "
                           "WHERE a.name = 'data/cross_document_segments' AND "
                           "json_extract(r.config, '$.router.plugin') = 'lory' AND "
                           "CAST(a.value AS REAL) BETWEEN 0 AND 1")
                .value_or(-1),
            2);
  EXPECT_EQ(results
                .query_int("SELECT count(*) FROM run_attributes WHERE name = "
                           "'data/cross_document_segments'")
                .value_or(-1),
            2);
  // Every heatmap on one colour scale, fixed (not gnuplot's per-figure autoscale).
  std::set<std::string> scales;
  for (const auto& entry : std::filesystem::directory_iterator(dir.file("report"))) {
    if (entry.path().extension() != ".gp" ||
        entry.path().filename().string().rfind("heatmap", 0) != 0)
      continue;
    std::istringstream script(testing::read_text(entry.path().string()));
    for (std::string line; std::getline(script, line);) {
      if (line.rfind("set cbrange", 0) == 0) scales.insert(line);
    }
  }
  ASSERT_EQ(scales.size(), 1u);
  EXPECT_EQ(scales.begin()->find("*"), std::string::npos) << *scales.begin();
  // The balance section (MaxVio, load percentiles) and routing stability of the Lory runs.
  EXPECT_NE(report.find("## Load balance during training"), std::string::npos) << report;
  EXPECT_NE(report.find("top-1 agreement / distance"), std::string::npos) << report;
}

}  // namespace
}  // namespace lory
