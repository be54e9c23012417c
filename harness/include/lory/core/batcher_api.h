// The batcher plugin interface. A batcher only plans: it decides in which order the training
// documents are concatenated (and which are dropped); the harness turns the plan into training
// instances of context_length + 1 tokens, with per-token domain and document ids.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lory/abi/plugin_abi.h"
#include "lory/core/corpus.h"
#include "lory/core/param_values.h"

namespace lory {

struct BatcherContext {
  const Corpus& corpus;
  int64_t context_length;  // L: instances hold L + 1 tokens (inputs and shifted targets)
  uint64_t seed;           // differs per run seed and per epoch
  std::string cache_dir;   // where a batcher may keep expensive, reusable work (may be empty)
};

struct InstancePlan {
  // Training documents in stream order; each is followed by the corpus's end-of-document token.
  std::vector<uint32_t> document_order;
  // Optional: the order in which the cut instances are trained on (a permutation of
  // 0..instance_count-1). Empty = in stream order.
  std::vector<uint64_t> instance_order;
  // Documents deliberately left out (e.g. near-duplicates), counted in the run's attributes.
  std::vector<uint32_t> dropped_documents;
  // Plan-quality numbers to log with the run (name -> value), e.g. adjacent same-domain rate.
  std::map<std::string, double> stats;
  // One line saying how the plan was made (recorded with the run).
  std::string description;
};

class BatcherPlugin {
 public:
  static constexpr LoryPluginKind kKind = LORY_PLUGIN_BATCHER;
  static constexpr const char* kFactoryAlias = "lory_create_batcher";

  virtual ~BatcherPlugin() = default;
  // Deterministic for a given corpus, params and context.seed.
  virtual InstancePlan plan(const BatcherContext& context, const ParamValues& params) = 0;
};

}  // namespace lory
