// The whole path through the real binaries: lory-data prepares a corpus, `lory run` trains a tiny
// dense model in a worker process, the results store holds every row, and the run can be scored
// and exported for Python.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/sqlite_db.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::build_dir;
using testing::run_command;
using testing::TempDir;

class TinyExperiment : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    testing::prepare_byte_corpus(*dir_, testing::synthetic_documents(3, 40, 20, 80));
    testing::write_text(dir_->file("tiny.toml"),
                        testing::tiny_experiment("tiny", "steps = 12\nbatch_size = 4\nlr = 0.003\nlog_every = 4",
                                                 "every = 6"));
    run_ = new testing::CommandResult(
        run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("tiny.toml"), dir_->file("r.sqlite"))));
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static int64_t count(const std::string& sql) {
    Database db(dir_->file("r.sqlite"), Database::Mode::ReadOnly);
    return db.query_int(sql).value_or(-1);
  }
  static TempDir* dir_;
  static testing::CommandResult* run_;
};
TempDir* TinyExperiment::dir_ = nullptr;
testing::CommandResult* TinyExperiment::run_ = nullptr;

TEST_F(TinyExperiment, TrainsAndRecordsRunsMetricsAndEvalsForEveryDomain) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  EXPECT_NE(run_->output.find("held-out perplexity per domain"), std::string::npos) << run_->output;
  EXPECT_EQ(count("SELECT count(*) FROM runs WHERE status = 'done' AND last_step = 12"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 3);
  EXPECT_EQ(count("SELECT count(DISTINCT step) FROM evals"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM evals WHERE step = 12 AND domain IN ('domain0', 'domain1', 'domain2', 'all')"), 4);
  EXPECT_EQ(count("SELECT count(*) FROM evals WHERE NOT (ppl > 1 AND ppl < 300)"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM routing_stats WHERE step = 12"), 2 * 3);  // layers x domains x 1 expert
  EXPECT_EQ(count("SELECT count(*) FROM run_attributes WHERE name = 'parameters_total'"), 1);
  // Loss falls: last logged training loss below the first.
  EXPECT_EQ(count("SELECT (SELECT value FROM metrics WHERE name = 'train/loss' ORDER BY step DESC LIMIT 1) < "
                  "(SELECT value FROM metrics WHERE name = 'train/loss' ORDER BY step LIMIT 1)"),
            1);
}

TEST_F(TinyExperiment, RerunningSkipsDoneCells) {
  const auto again = run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("tiny.toml"),
                                             dir_->file("r.sqlite")));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("1 cell, 1 done before, 0 to train"), std::string::npos) << again.output;
  EXPECT_EQ(count("SELECT count(*) FROM runs"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 3);
}

TEST_F(TinyExperiment, ScorePrintsPerTokenLogProbabilities) {
  testing::write_text(dir_->file("text.txt"), "a01 a12 a20 b03");
  const auto scored = run_command(fmt::format("{}/lory score 1 --text {} --db {}", build_dir(), dir_->file("text.txt"),
                                              dir_->file("r.sqlite")));
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  EXPECT_NE(scored.output.find("# 14 tokens scored"), std::string::npos) << scored.output;
}

TEST_F(TinyExperiment, ExportLoadsInPythonTorch) {
  const auto exported = run_command(fmt::format("{}/lory export 1 --out {} --db {}", build_dir(), dir_->file("export"),
                                                dir_->file("r.sqlite")));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_TRUE(std::filesystem::exists(dir_->file("export/config.json")));
  if (run_command("/usr/bin/python3 -c 'import torch'").exit_code != 0) {
    GTEST_SKIP() << "python3-torch is not installed: the export was written but not loaded in Python";
  }
  const auto loaded = run_command(fmt::format(
      "/usr/bin/python3 -c \"import torch; d = torch.load('{}'); print(len(d), tuple(d['embedding_VD'].shape))\"",
      dir_->file("export/weights.pt")));
  ASSERT_EQ(loaded.exit_code, 0) << loaded.output;
  EXPECT_NE(loaded.output.find("(257, 32)"), std::string::npos) << loaded.output;
}

TEST_F(TinyExperiment, EmbedWritesOneVectorPerDocumentForTheSimilarityBatcher) {
  const auto embedded = run_command(fmt::format("{}/lory embed 1 --out {} --db {}", build_dir(), dir_->file("doc.emb"),
                                                dir_->file("r.sqlite")));
  ASSERT_EQ(embedded.exit_code, 0) << embedded.output;
  // Header (8 + 8 + 8 bytes, corpus checksum 64, run id 8), then 120 documents x d_model 32 floats.
  EXPECT_EQ(std::filesystem::file_size(dir_->file("doc.emb")), 96u + 120u * 32u * 4u);
  testing::write_text(dir_->file("embedded.toml"),
                      testing::read_text(dir_->file("tiny.toml")) + "[batcher]\nplugin = \"similarity\"\n"
                                                                   "[batcher.similarity]\nembedding = \"file\"\n"
                                                                   "embedding_file = \"doc.emb\"\n");
  const auto trained = run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("embedded.toml"),
                                               dir_->file("embedded.sqlite")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("similarity: file (mean hidden state of run 1) embeddings (d=32)"), std::string::npos)
      << trained.output;
  // Made from another corpus: refused by checksum, with the command that fixes it.
  TempDir other;
  testing::prepare_byte_corpus(other, testing::synthetic_documents(3, 40, 20, 81));
  std::filesystem::copy_file(dir_->file("doc.emb"), other.file("doc.emb"));
  testing::write_text(other.file("embedded.toml"), testing::read_text(dir_->file("embedded.toml")));
  const auto refused = run_command(fmt::format("{}/lory run {} --db {}", build_dir(), other.file("embedded.toml"),
                                               other.file("r.sqlite")));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("was made from another corpus"), std::string::npos) << refused.output;
}

TEST_F(TinyExperiment, DryRunPrintsTheCellsWithoutTraining) {
  const auto dry = run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(), dir_->file("tiny.toml"),
                                           dir_->file("dry.sqlite")));
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_NE(dry.output.find("experiment 'tiny'"), std::string::npos) << dry.output;
  EXPECT_FALSE(std::filesystem::exists(dir_->file("dry.sqlite")));
}

// A small Lory model on the embedded sample corpus (byte-level tokens, so no tokenizer training):
// a dense warm-up, upcycling into 4 experts, and a training loss that keeps falling after it.
TEST(SampleCorpusTraining, SmallLoryModelTrainsOnTheEmbeddedSampleAfterDenseWarmUp) {
  TempDir dir;
  std::string inputs;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/data/sample")) {
    if (entry.path().extension() == ".gz") inputs += " --jsonl " + entry.path().string();
  }
  const auto prepared =
      run_command(fmt::format("{}/lory-data prepare --out {} --tokenizer byte {}", build_dir(), dir.file("corpus"), inputs));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  std::string experiment = testing::tiny_experiment(
      "sample-lory", "steps = 40\nbatch_size = 8\nlr = 0.004\nlog_every = 4\ndense_warmup_fraction = 0.1", "every = 40",
      "[router]\nplugin = \"lory\"\n[router.lory]\nexperts = 4\nsegment_length = 8");
  testing::write_text(dir.file("sample.toml"), experiment);
  const auto trained =
      run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir.file("sample.toml"), dir.file("r.sqlite")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  Database db(dir.file("r.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM runs WHERE status = 'done' AND last_step = 40"), 1);
  EXPECT_EQ(db.query_int("SELECT CAST(value AS INTEGER) FROM run_attributes WHERE name = 'upcycle_step'"), 4);
  const auto loss_at = [&](int step) {
    Statement s = db.prepare("SELECT value FROM metrics WHERE name = 'train/loss' AND step = ?");
    s.bind(1, int64_t{step});
    return s.step() ? s.column_double(0) : -1.0;
  };
  // Byte-level loss starts near ln(257) = 5.55; it must fall, and go on falling after upcycling.
  EXPECT_LT(loss_at(40), loss_at(4) - 0.5) << trained.output;
  EXPECT_LT(loss_at(40), loss_at(8)) << trained.output;
  // The held-out evaluation covers the sample's six domains with four experts per layer.
  EXPECT_EQ(db.query_int("SELECT count(DISTINCT domain) FROM evals WHERE step = 40 AND domain <> 'all'"), 6);
  EXPECT_EQ(db.query_int("SELECT count(DISTINCT expert) FROM routing_stats WHERE step = 40"), 4);
}

// Every committed experiment expands and validates against the built plugins, and the CLI
// answers --version and --help.
TEST(CommittedExperiments, EveryExperimentFileDryRuns) {
  TempDir dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/experiments")) {
    if (entry.path().extension() != ".toml") continue;
    ++files;
    const auto dry = run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(), entry.path().string(),
                                             dir.file("dry.sqlite")));
    EXPECT_EQ(dry.exit_code, 0) << entry.path() << "\n" << dry.output;
    EXPECT_NE(dry.output.find(" cell"), std::string::npos) << dry.output;
  }
  EXPECT_GE(files, 3);
  EXPECT_FALSE(std::filesystem::exists(dir.file("dry.sqlite")));
  const auto version = run_command(build_dir() + "/lory --version");
  EXPECT_EQ(version.exit_code, 0) << version.output;
  EXPECT_FALSE(version.output.empty());
  for (const char* command : {"run", "run-cell", "query", "status", "report", "merge", "plugins"}) {
    const auto help = run_command(fmt::format("{}/lory {} --help", build_dir(), command));
    EXPECT_EQ(help.exit_code, 0) << command << "\n" << help.output;
  }
}

}  // namespace
}  // namespace lory
