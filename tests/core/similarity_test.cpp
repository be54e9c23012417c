// The similarity batcher through its real plugin: determinism, every document once, grouping of
// planted clusters and of the sample corpus's domains, near-duplicates, and the plan cache.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/corpus/corpus_writer.h"
#include "core/corpus/instance_stream.h"
#include "core/plugins/plugin_loader.h"
#include "lory/core/batcher_api.h"
#include "lory/core/seeded_random.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::TempDir;

class SimilarityBatcher : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    plugin_ = new LoadedPlugin(
        load_plugin_file(testing::build_dir() + "/plugins/lory_batcher_similarity.so"));
  }
  static void TearDownTestSuite() { delete plugin_; }

  static ParamValues params(const std::map<std::string, ParamValue>& overrides = {}) {
    Diagnostics diagnostics;
    ParamValues values =
        validate_params(nullptr, plugin_->descriptor.schema, "similarity", {}, diagnostics);
    for (const auto& [name, value] : overrides) values.set(name, value);
    return values;
  }
  static InstancePlan plan(const Corpus& corpus, uint64_t seed, const ParamValues& p,
                           const std::string& cache = "") {
    auto batcher = create_plugin_object<BatcherPlugin>(*plugin_);
    return batcher->plan({corpus, 64, seed, cache}, p);
  }
  static LoadedPlugin* plugin_;
};
LoadedPlugin* SimilarityBatcher::plugin_ = nullptr;

// `clusters` clusters of `per_cluster` documents; a cluster draws 80% of its tokens from its own
// 50-token vocabulary and 20% from a shared one. Documents are interleaved across clusters.
// With `heldout_every` = n > 0, every n-th document of a cluster is in the held-out split.
std::string planted_cluster_corpus(const TempDir& dir, int clusters, int per_cluster,
                                   int duplicates = 0, int heldout_every = 0) {
  const std::string path = dir.file("clusters");
  CorpusWriter writer(path, true, 1000);
  SeededRandom random(7);
  std::vector<std::string> names;
  for (int c = 0; c < clusters; ++c) names.push_back(fmt::format("cluster{}", c));
  std::vector<uint32_t> previous;
  for (int i = 0; i < per_cluster; ++i) {
    for (int c = 0; c < clusters; ++c) {
      std::vector<uint32_t> tokens(200 + random.below(300));
      for (uint32_t& t : tokens) {
        t = random.uniform() < 0.8 ? static_cast<uint32_t>(c * 50 + random.below(50))
                                   : static_cast<uint32_t>(900 + random.below(99));
      }
      const Split split = heldout_every > 0 && i % heldout_every == heldout_every - 1
                              ? Split::Heldout
                              : Split::Train;
      writer.add_document(fmt::format("c{}/d{}", c, i), static_cast<uint16_t>(c), split,
                          tokens.data(), tokens.size());
      if (i < duplicates && c == 0) {
        writer.add_document(fmt::format("c{}/d{}-copy", c, i), static_cast<uint16_t>(c),
                            Split::Train, tokens.data(), tokens.size());
      }
    }
  }
  writer.finish("byte", 999, names, "{}");
  return path;
}

TEST_F(SimilarityBatcher, SameSeedSamePlanAndEveryTrainingDocumentExactlyOnce) {
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 4, 30, 0, /*heldout_every=*/5));
  ASSERT_EQ(corpus->documents_of_split(Split::Train).size(),
            4u * 24);  // held-out documents are not planned
  const InstancePlan a = plan(*corpus, 5, params()), b = plan(*corpus, 5, params()),
                     c = plan(*corpus, 6, params());
  EXPECT_EQ(a.document_order, b.document_order);
  EXPECT_EQ(a.instance_order, b.instance_order);
  EXPECT_EQ(a.document_order, c.document_order);  // the chains do not depend on the seed...
  EXPECT_NE(a.instance_order, c.instance_order);  // ...the instance shuffle does
  std::vector<uint32_t> seen = a.document_order;
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, corpus->documents_of_split(Split::Train));
  EXPECT_TRUE(a.dropped_documents.empty());
  InstanceStream stream(*corpus, a, 64);  // the instance order is a valid permutation
  EXPECT_GT(stream.instance_count(), 100u);
}

TEST_F(SimilarityBatcher, PlantedClustersEndUpNextToEachOther) {
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 8, 60));
  const InstancePlan p = plan(*corpus, 1, params());
  const InstanceStream stream(*corpus, p, 64);
  std::string stats;
  for (const auto& [name, value] : p.stats) stats += fmt::format(" {}={:.3g}", name, value);
  EXPECT_GE(stream.adjacent_same_domain_rate(), 0.9) << stats;
  EXPECT_NEAR(stream.random_order_same_domain_rate(), 1.0 / 8, 0.01);
  EXPECT_DOUBLE_EQ(p.stats.at("adjacent_same_domain"), stream.adjacent_same_domain_rate());
  EXPECT_GT(p.stats.at("adjacent_cosine"), p.stats.at("random_pair_cosine") + 0.3);
  // The random batcher on the same corpus, for contrast.
  auto random_batcher = create_plugin_object<BatcherPlugin>(
      load_plugin_file(testing::build_dir() + "/plugins/lory_batcher_random.so"));
  ParamValues random_params;
  random_params.set("shuffle_instances", true);
  const InstanceStream random_stream(*corpus,
                                     random_batcher->plan({*corpus, 64, 1, ""}, random_params), 64);
  EXPECT_LT(random_stream.adjacent_same_domain_rate(), 0.25);
}

// The control of the sample-corpus diagnosis: embedding = "random" runs the same graph, chaining
// and shuffle on vectors that say nothing about the text, so its documents follow each other no
// more by cluster than in a random order, while the TF-IDF plan groups them; both use every
// document once, and the instances a budget sees are as many, as long, and as mixed per batch.
TEST_F(SimilarityBatcher, RandomEmbeddingsAreAControlThatGroupsNothing) {
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 8, 40));
  const InstanceStream control(
      *corpus, plan(*corpus, 1, params({{"embedding", std::string("random")}})), 64);
  const InstanceStream tfidf(*corpus, plan(*corpus, 1, params()), 64);
  EXPECT_NE(control.plan().description.find("random (control)"), std::string::npos)
      << control.plan().description;
  EXPECT_NEAR(control.adjacent_same_domain_rate(), control.random_order_same_domain_rate(), 0.06);
  EXPECT_GT(tfidf.adjacent_same_domain_rate(), 0.8);
  std::vector<uint32_t> a = control.plan().document_order, b = tfidf.plan().document_order;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_EQ(control.instance_count(), tfidf.instance_count());
  // A budget of half an epoch in batches of 8 instances.
  const int64_t used = static_cast<int64_t>(control.instance_count() / 2);
  const InstanceStream::Coverage c = control.coverage(used, 8), t = tfidf.coverage(used, 8);
  EXPECT_DOUBLE_EQ(c.epochs, t.epochs);
  EXPECT_EQ(c.repeated_instances, 0);
  EXPECT_EQ(c.distinct_tokens, used * 64);
  // Instances of the TF-IDF plan hold one cluster; shuffled into batches, the batches still mix.
  EXPECT_GT(c.batch_domain_entropy, 0.5 * c.corpus_domain_entropy);
  EXPECT_GT(t.batch_domain_entropy, 0.5 * t.corpus_domain_entropy);
  EXPECT_GT(t.domains_per_batch, 3.0);
  // Past one epoch, instances repeat.
  EXPECT_EQ(
      control.coverage(static_cast<int64_t>(control.instance_count()) + 5, 8).repeated_instances,
      5);
}

TEST_F(SimilarityBatcher, InContextPretrainingTraversalWithoutRefinementsStillGroupsClusters) {
  // backtrack = 0 and attach_orphans = false: the paper's rule exactly (start at minimum in-degree,
  // append the most similar unused neighbour, jump when stuck). Every document once; clusters
  // grouped far above random (1/8), if less tightly than with the refinements.
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 8, 60));
  const InstancePlan plain =
      plan(*corpus, 1, params({{"backtrack", int64_t{0}}, {"attach_orphans", false}}));
  const InstancePlan refined = plan(*corpus, 1, params());
  std::vector<uint32_t> seen = plain.document_order;
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, corpus->documents_of_split(Split::Train));
  const double plain_rate = InstanceStream(*corpus, plain, 64).adjacent_same_domain_rate();
  const double refined_rate = InstanceStream(*corpus, refined, 64).adjacent_same_domain_rate();
  std::printf("adjacent same-cluster rate: plain traversal %.3f, with backtrack and orphans %.3f\n",
              plain_rate, refined_rate);
  EXPECT_GE(plain_rate, 0.6);
  EXPECT_GE(refined_rate, plain_rate);
}

TEST_F(SimilarityBatcher, ApproximateIndexesGroupClustersToo) {
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 8, 60));
  for (const std::string index : {"hnsw", "ivf"}) {
    const InstancePlan p = plan(*corpus, 1, params({{"index", index}}));
    EXPECT_GE(InstanceStream(*corpus, p, 64).adjacent_same_domain_rate(), 0.85) << index;
  }
}

TEST_F(SimilarityBatcher, NearDuplicatesAreDroppedAndCountedAndChainsCanBeCapped) {
  TempDir dir;
  const auto corpus = Corpus::open(planted_cluster_corpus(dir, 3, 20, /*duplicates=*/5));
  const InstancePlan p =
      plan(*corpus, 1, params({{"dedup_threshold", 0.99}, {"max_chain_length", int64_t{4}}}));
  EXPECT_EQ(p.dropped_documents.size(), 5u);
  for (uint32_t doc : p.dropped_documents)
    EXPECT_NE(corpus->document_id(doc).find("-copy"), std::string::npos);
  EXPECT_EQ(p.document_order.size() + p.dropped_documents.size(), corpus->document_count());
  EXPECT_DOUBLE_EQ(p.stats.at("dropped_near_duplicates"), 5);
  EXPECT_LE(p.stats.at("chain_length_max"), 4);
}

TEST_F(SimilarityBatcher, SampleCorpusDomainsAreGroupedWellAboveRandom) {
  TempDir dir;
  std::string inputs;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/data/sample")) {
    if (entry.path().extension() == ".gz") inputs += " --jsonl " + entry.path().string();
  }
  const auto prepared =
      testing::run_command(fmt::format("{}/lory-data prepare --out {} --vocab-size 1024 {}",
                                       testing::build_dir(), dir.file("sample"), inputs));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  const auto corpus = Corpus::open(dir.file("sample"));
  const InstanceStream stream(*corpus, plan(*corpus, 1, params()), 64);
  EXPECT_GT(stream.adjacent_same_domain_rate(), stream.random_order_same_domain_rate() + 0.4)
      << "similarity " << stream.adjacent_same_domain_rate() << " vs random "
      << stream.random_order_same_domain_rate();
}

TEST_F(SimilarityBatcher, TheCacheIsReusedAndInvalidatedByAChangedOptionOrCorpus) {
  TempDir dir;
  const std::string cache = dir.file("cache");
  auto corpus = Corpus::open(planted_cluster_corpus(dir, 3, 20));
  EXPECT_EQ(plan(*corpus, 1, params(), cache).stats.at("cache_hit"), 0);
  const InstancePlan again = plan(*corpus, 2, params(), cache);
  EXPECT_EQ(again.stats.at("cache_hit"), 1);
  EXPECT_NE(again.description.find("cached"), std::string::npos);
  EXPECT_EQ(again.document_order, plan(*corpus, 2, params()).document_order);
  EXPECT_EQ(plan(*corpus, 1, params({{"neighbours", int64_t{5}}}), cache).stats.at("cache_hit"), 0);
  corpus.reset();
  corpus = Corpus::open(planted_cluster_corpus(dir, 3, 21));  // another corpus, another checksum
  EXPECT_EQ(plan(*corpus, 1, params(), cache).stats.at("cache_hit"), 0);
  // A damaged cache file is recomputed, not trusted.
  for (const auto& entry : std::filesystem::directory_iterator(cache + "/similarity")) {
    std::filesystem::resize_file(entry.path(), 100);
  }
  EXPECT_EQ(plan(*corpus, 1, params(), cache).stats.at("cache_hit"), 0);
}

}  // namespace
}  // namespace lory
