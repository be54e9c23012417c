// The `similarity` batcher (Lory §2, after In-Context Pretraining): training documents are
// embedded, linked to their k nearest neighbours, and chained greedily so that neighbouring
// documents in a training sequence are similar; the cut instances are then shuffled (seeded), so
// that neighbouring instances stay diverse. The plan is cached under the corpus checksum and
// the plan options; the run's seed only changes the instance shuffle.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "document_embedding.h"
#include "greedy_chaining.h"
#include "lory/core/batcher_api.h"
#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/core/seeded_random.h"
#include "lory/core/sha256.h"
#include "neighbour_graph.h"
#include "plan_cache.h"

namespace lory_plugins::similarity {

enum class Embedding { Tfidf, File, Random };

struct Options {
  Embedding embedding = Embedding::Tfidf;
  std::string embedding_file, index;
  int64_t dimension = 0, neighbours = 0, exact_below = 0, max_chain_length = 0, backtrack = 0,
          threads = 0;
  double dedup_threshold = 0;
  bool attach_orphans = true, shuffle_instances = true;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("batcher.similarity")
          .choice("embedding", &Options::embedding,
                  {{"tfidf", Embedding::Tfidf},
                   {"file", Embedding::File},
                   {"random", Embedding::Random}},
                  Embedding::Tfidf,
                  "tfidf = TF-IDF over the corpus tokens, randomly projected; file = vectors from "
                  "embedding_file; "
                  "random = random unit vectors (the control: the same graph, chaining and shuffle "
                  "with no "
                  "similarity in it)")
          .path("embedding_file", &Options::embedding_file, "",
                "LORYEMB2 file of one vector per corpus document (`lory embed RUN`), relative to "
                "the experiment file")
          .integer("dimension", &Options::dimension, 128, 8, 4096,
                   "dimension of the projected TF-IDF vectors")
          .integer("neighbours", &Options::neighbours, 10, 1, 1000,
                   "k of the nearest-neighbour graph")
          .text("index", &Options::index, "auto", "auto|exact|hnsw|ivf",
                "FAISS search: exact (flat), HNSW, IVF-flat; auto = exact below exact_below "
                "documents, else HNSW")
          .integer("exact_below", &Options::exact_below, 20000, 0, int64_t{1000000000000},
                   "corpus size under which auto uses exact search")
          .real("dedup_threshold", &Options::dedup_threshold, 1, 0, 1,
                "drop a document whose cosine to a kept earlier neighbour is at least this; 1 = "
                "keep all")
          .integer("max_chain_length", &Options::max_chain_length, 0, 0, int64_t{1000000000000},
                   "documents per chain before jumping to a new start; 0 = unlimited (In-Context "
                   "Pretraining used 21)")
          .integer("backtrack", &Options::backtrack, 16, 0, 1000000,
                   "when stuck, look for an unused neighbour of the last N chain documents before "
                   "jumping; 0 = "
                   "In-Context Pretraining's rule")
          .flag("attach_orphans", &Options::attach_orphans, true,
                "move a chain of one document next to its most similar neighbour in a longer chain")
          .flag(
              "shuffle_instances", &Options::shuffle_instances, true,
              "shuffle the cut instances with the run's seed (neighbouring instances stay diverse)")
          .integer("threads", &Options::threads, 1, 1, 256, "FAISS (OpenMP) threads")
          .rule([](const Options& o) -> std::vector<lory::ParamProblem> {
            if (o.embedding == Embedding::File && o.embedding_file.empty()) {
              return {{"embedding",
                       "embedding = \"file\" needs embedding_file = \"PATH\" (a file written by "
                       "`lory embed RUN`)"}};
            }
            return {};
          });
  return declaration;
}

namespace {

using Clock = std::chrono::steady_clock;

// One fixed draw of the random control embeddings: the run's seed still shuffles the instances,
// and a new parameter would change the identity of every existing similarity cell.
constexpr uint64_t kRandomEmbeddingSeed = 20240501;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Everything the chains depend on; the key of the cache.
std::string plan_key(const lory::BatcherContext& context, const lory::ParamValues& p) {
  std::string options = "similarity-plan-v1";
  for (const char* name :
       {"embedding", "embedding_file", "dimension", "neighbours", "index", "exact_below",
        "dedup_threshold", "max_chain_length", "backtrack", "attach_orphans"}) {
    options += fmt::format(
        "|{}={}", name,
        p.has(name)
            ? std::visit([](const auto& v) { return fmt::format("{}", v); }, p.all().at(name))
            : "");
  }
  // The embeddings themselves, when read from a file: a rewritten file is another plan.
  if (p.get_string("embedding") == "file" && !p.get_string("embedding_file").empty()) {
    options += "|file-sha256=" + lory::sha256_file_hex(p.get_string("embedding_file"));
  }
  return lory::sha256_hex(context.corpus.checksum() + "|" + options);
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(
      std::min<double>(values.size() - 1, std::floor(q * static_cast<double>(values.size()))))];
}

CachedPlan build_plan(const lory::BatcherContext& context, const Options& o) {
  const lory::Corpus& corpus = context.corpus;
  const std::vector<uint32_t> documents = corpus.documents_of_split(lory::Split::Train);
  CachedPlan plan;
  auto t = Clock::now();
  const bool from_file = o.embedding == Embedding::File;
  if (from_file && o.embedding_file.empty()) {
    throw std::invalid_argument(
        "batcher.similarity: embedding = \"file\" needs embedding_file = \"PATH\"");
  }
  const bool random_control = o.embedding == Embedding::Random;
  const Embeddings embeddings =
      from_file        ? embeddings_from_file(o.embedding_file, corpus, documents)
      : random_control ? random_unit_vectors(documents.size(), o.dimension, kRandomEmbeddingSeed)
                       : tfidf_projection(corpus, documents, o.dimension);
  plan.stats["seconds_embedding"] = seconds_since(t);
  const NeighbourGraph graph = nearest_neighbours(embeddings, o.neighbours, o.index, o.exact_below,
                                                  static_cast<int>(o.threads));
  plan.stats["seconds_index_build"] = graph.build_seconds;
  plan.stats["seconds_search"] = graph.search_seconds;
  t = Clock::now();
  const Chains chains =
      greedy_chains(graph, static_cast<int64_t>(documents.size()), o.dedup_threshold,
                    o.max_chain_length, o.backtrack, o.attach_orphans);
  plan.stats["seconds_chaining"] = seconds_since(t);

  std::vector<int64_t> rows;  // rows of the embedding matrix in plan order
  std::vector<double> lengths;
  double within_chain_cosine = 0;
  int64_t within_chain_pairs = 0;
  for (const auto& chain : chains.chains) {
    lengths.push_back(static_cast<double>(chain.size()));
    for (size_t i = 0; i < chain.size(); ++i) {
      rows.push_back(chain[i]);
      if (i > 0) {
        within_chain_cosine +=
            cosine(embeddings, static_cast<size_t>(chain[i - 1]), static_cast<size_t>(chain[i]));
        ++within_chain_pairs;
      }
    }
  }
  for (int64_t row : rows) plan.document_order.push_back(documents[static_cast<size_t>(row)]);
  for (int64_t row : chains.dropped) plan.dropped.push_back(documents[static_cast<size_t>(row)]);

  // Quality: similarity and domain agreement of adjacent documents, against what a random order
  // of the same documents would give.
  double adjacent_cosine = 0;
  int64_t same_domain = 0;
  for (size_t i = 1; i < rows.size(); ++i) {
    adjacent_cosine +=
        cosine(embeddings, static_cast<size_t>(rows[i - 1]), static_cast<size_t>(rows[i]));
    same_domain += corpus.document(plan.document_order[i]).domain ==
                   corpus.document(plan.document_order[i - 1]).domain;
  }
  const double pairs = std::max<double>(1, static_cast<double>(rows.size()) - 1);
  std::vector<double> per_domain(corpus.domain_count(), 0);
  for (uint32_t doc : plan.document_order) per_domain[corpus.document(doc).domain] += 1;
  double random_same = 0;
  const double n = static_cast<double>(plan.document_order.size());
  for (double count : per_domain) random_same += n > 1 ? count * (count - 1) / (n * (n - 1)) : 0;
  lory::SeededRandom sampler(12345);
  double random_cosine = 0;
  const int samples = std::min<int>(20000, static_cast<int>(rows.size()));
  for (int s = 0; s < samples; ++s) {
    random_cosine += cosine(embeddings, sampler.below(rows.size()), sampler.below(rows.size()));
  }
  plan.stats["adjacent_same_domain"] = static_cast<double>(same_domain) / pairs;
  plan.stats["random_adjacent_same_domain"] = random_same;
  plan.stats["adjacent_cosine"] = adjacent_cosine / pairs;
  plan.stats["within_chain_adjacent_cosine"] =
      within_chain_pairs > 0 ? within_chain_cosine / within_chain_pairs : 0;
  plan.stats["random_pair_cosine"] = samples > 0 ? random_cosine / samples : 0;
  plan.stats["chains"] = static_cast<double>(chains.chains.size());
  plan.stats["chain_length_mean"] =
      lengths.empty() ? 0 : std::accumulate(lengths.begin(), lengths.end(), 0.0) / lengths.size();
  plan.stats["chain_length_median"] = percentile(lengths, 0.5);
  plan.stats["chain_length_p90"] = percentile(lengths, 0.9);
  plan.stats["chain_length_max"] =
      lengths.empty() ? 0 : *std::max_element(lengths.begin(), lengths.end());
  plan.stats["dropped_near_duplicates"] = static_cast<double>(chains.dropped.size());
  plan.stats["documents"] = static_cast<double>(documents.size());
  plan.description = fmt::format(
      "similarity: {} embeddings (d={}), {}-NN by {}, {} chains over {} documents{}",
      from_file        ? (embeddings.source_run > 0
                              ? fmt::format("file (mean hidden state of run {})", embeddings.source_run)
                              : std::string("file"))
      : random_control ? std::string("random (control)")
                       : std::string("tf-idf projection"),
      embeddings.dimension, o.neighbours, graph.method, chains.chains.size(), rows.size(),
      chains.dropped.empty() ? ""
                             : fmt::format(", {} near-duplicates dropped", chains.dropped.size()));
  return plan;
}

}  // namespace

class SimilarityBatcher final : public lory::BatcherPlugin {
 public:
  lory::InstancePlan plan(const lory::BatcherContext& context,
                          const lory::ParamValues& values) override {
    const Options options = params().read(values);
    const std::string key = plan_key(context, values);
    const std::string path =
        context.cache_dir.empty() ? "" : plan_cache_path(context.cache_dir, key);
    std::optional<CachedPlan> cached = path.empty() ? std::nullopt : load_cached_plan(path, key);
    const bool hit = cached.has_value();
    if (!cached) {
      cached = build_plan(context, options);
      if (!path.empty()) store_cached_plan(path, key, *cached);
    }
    lory::InstancePlan plan;
    plan.document_order = std::move(cached->document_order);
    plan.dropped_documents = std::move(cached->dropped);
    plan.stats = std::move(cached->stats);
    plan.stats["cache_hit"] = hit ? 1 : 0;
    plan.description = cached->description + (hit ? " (cached plan)" : "");
    if (options.shuffle_instances) {
      uint64_t stream = 0;
      for (uint32_t doc : plan.document_order) stream += context.corpus.document(doc).length + 1;
      plan.instance_order.resize(stream / static_cast<uint64_t>(context.context_length + 1));
      std::iota(plan.instance_order.begin(), plan.instance_order.end(), 0);
      lory::SeededRandom random(context.seed);
      random.shuffle(plan.instance_order);
    }
    return plan;
  }
};

std::unique_ptr<lory::BatcherPlugin> create() { return std::make_unique<SimilarityBatcher>(); }

}  // namespace lory_plugins::similarity

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_BATCHER, "similarity",
    "Chains of similar documents (TF-IDF embeddings, FAISS kNN, greedy traversal), then shuffled "
    "instances",
    lory_plugins::similarity::params)
LORY_BATCHER_FACTORY(lory_plugins::similarity::create)
