// The similarity plan (document order and dropped near-duplicates, with its statistics) is
// expensive and depends only on the corpus and the plan options, not on the run's seed: it is
// kept in the run cache under a key made of the corpus checksum and the options, written
// atomically and checksummed; anything that does not verify is recomputed.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lory_plugins::similarity {

struct CachedPlan {
  std::vector<uint32_t> document_order;
  std::vector<uint32_t> dropped;
  std::map<std::string, double> stats;
  std::string description;
};

std::string plan_cache_path(const std::string& cache_dir, const std::string& key);
std::optional<CachedPlan> load_cached_plan(const std::string& path, const std::string& key);
void store_cached_plan(const std::string& path, const std::string& key, const CachedPlan& plan);

}  // namespace lory_plugins::similarity
