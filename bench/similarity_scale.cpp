// The similarity batcher at scale: synthetic corpora of N documents of ~500 tokens (each drawn
// from one of N/100 topics: 70% topic words, 30% background words, Zipf-distributed), planned
// with the plugin's defaults. For every N: wall time of embedding, index build, search and
// chaining, the whole plan, and the peak resident memory of the process that planned (each size
// runs in its own child process, so the peaks do not mix). Ends with the growth exponent of the
// plan time between consecutive sizes (time ~ N^exponent).
// Usage: lory_bench_similarity [--sizes 10000,100000,1000000] [--index auto|exact|hnsw|ivf] [--keep
// DIR]
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/corpus/corpus_writer.h"
#include "core/plugins/plugin_loader.h"
#include "lory/core/batcher_api.h"
#include "lory/core/seeded_random.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kVocab = 16384;

// Zipf(1) over `size` ranks by inverse transform on a precomputed CDF.
struct Zipf {
  std::vector<double> cdf;
  explicit Zipf(size_t size) : cdf(size) {
    double total = 0;
    for (size_t r = 0; r < size; ++r) cdf[r] = (total += 1.0 / static_cast<double>(r + 1));
    for (double& c : cdf) c /= total;
  }
  size_t draw(lory::SeededRandom& random) const {
    return static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), random.uniform()) -
                               cdf.begin());
  }
};

void write_synthetic_corpus(const std::string& path, int64_t documents) {
  lory::CorpusWriter writer(path, true, kVocab);
  lory::SeededRandom random(42);
  const Zipf topic_words(200), background_words(kVocab);
  const int64_t topics = std::max<int64_t>(1, documents / 100);
  std::vector<uint32_t> tokens;
  for (int64_t d = 0; d < documents; ++d) {
    const uint64_t topic = random.below(static_cast<uint64_t>(topics));
    tokens.resize(300 + random.below(400));
    for (uint32_t& t : tokens) {
      if (random.uniform() < 0.7) {
        // A topic's words: 200 ranks mapped into the vocabulary by a topic-specific stride.
        t = static_cast<uint32_t>((topic * 7919 + topic_words.draw(random) * 104729) % kVocab);
      } else {
        t = static_cast<uint32_t>(background_words.draw(random));
      }
    }
    writer.add_document(fmt::format("doc{}", d), static_cast<uint16_t>(topic % 16),
                        lory::Split::Train, tokens.data(), tokens.size());
  }
  std::vector<std::string> domains;
  for (int i = 0; i < 16; ++i) domains.push_back(fmt::format("topic_mod{}", i));
  writer.finish("byte", kVocab - 1, domains, "{}");
}

int plan_in_this_process(const std::string& corpus_path, const std::string& index,
                         int64_t documents) {
  const auto plugin = lory::load_plugin_file(
      (boost::dll::program_location().parent_path() / "plugins" / "lory_batcher_similarity.so")
          .string());
  lory::Diagnostics diagnostics;
  lory::ParamValues params =
      lory::validate_params(nullptr, plugin.descriptor.schema, "similarity", {}, diagnostics);
  params.set("index", index);
  const auto corpus = lory::Corpus::open(corpus_path);
  auto batcher = lory::create_plugin_object<lory::BatcherPlugin>(plugin);
  const auto start = Clock::now();
  const lory::InstancePlan plan = batcher->plan({*corpus, 1024, 1, ""}, params);
  const double total = std::chrono::duration<double>(Clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto& s = plan.stats;
  std::printf("%10lld %10.1f %10.1f %10.1f %10.2f %10.1f %10.2f %8.3f %8.3f  %s\n",
              static_cast<long long>(documents), s.at("seconds_embedding"),
              s.at("seconds_index_build"), s.at("seconds_search"), s.at("seconds_chaining"), total,
              static_cast<double>(usage.ru_maxrss) / (1 << 20), s.at("adjacent_cosine"),
              s.at("random_pair_cosine"), plan.description.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes = {10000, 100000, 1000000};
  std::string index = "auto", keep;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sizes")) {
      sizes.clear();
      std::stringstream list(argv[i + 1]);
      std::string item;
      while (std::getline(list, item, ',')) sizes.push_back(std::stoll(item));
    }
    if (!std::strcmp(argv[i], "--index")) index = argv[i + 1];
    if (!std::strcmp(argv[i], "--keep")) keep = argv[i + 1];
  }
  const fs::path work = keep.empty()
                            ? fs::temp_directory_path() / fmt::format("lory-bench-sim-{}", getpid())
                            : fs::path(keep);
  fs::create_directories(work);
  std::printf("similarity batcher, synthetic documents of 300-700 tokens, index %s, 1 thread\n",
              index.c_str());
  std::printf("%10s %10s %10s %10s %10s %10s %10s %8s %8s\n", "documents", "embed s", "index s",
              "search s", "chain s", "plan s", "peak GB", "adj cos", "rand cos");
  std::vector<double> seconds;
  for (const int64_t n : sizes) {
    const std::string corpus = (work / fmt::format("synthetic-{}", n)).string();
    if (!fs::exists(corpus + "/manifest.json")) write_synthetic_corpus(corpus, n);
    const auto start = Clock::now();
    std::fflush(stdout);  // the child would print what is still buffered a second time
    const pid_t child = fork();
    if (child == 0) _exit(plan_in_this_process(corpus, index, n));
    int status = 0;
    waitpid(child, &status, 0);
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      std::printf("%10lld failed\n", static_cast<long long>(n));
  }
  for (size_t i = 1; i < seconds.size(); ++i) {
    std::printf("growth %lld -> %lld: time x%.1f for documents x%.0f (exponent %.2f)\n",
                static_cast<long long>(sizes[i - 1]), static_cast<long long>(sizes[i]),
                seconds[i] / seconds[i - 1],
                static_cast<double>(sizes[i]) / static_cast<double>(sizes[i - 1]),
                std::log(seconds[i] / seconds[i - 1]) /
                    std::log(static_cast<double>(sizes[i]) / static_cast<double>(sizes[i - 1])));
  }
  if (keep.empty()) fs::remove_all(work);
  return 0;
}
