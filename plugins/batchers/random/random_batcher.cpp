// The `random` batcher: training documents in a seeded random order, the standard way LMs are
// pre-trained and the baseline the similarity batcher is compared with.
#include <fmt/format.h>

#include "lory/batcher_api.h"
#include "lory/plugin.h"
#include "lory/seeded_random.h"

namespace lory_plugins::random_batcher {

class RandomBatcher final : public lory::BatcherPlugin {
 public:
  lory::InstancePlan plan(const lory::BatcherContext& context, const lory::ParamValues&) override {
    lory::InstancePlan plan;
    plan.document_order = context.corpus.documents_of_split(lory::Split::Train);
    lory::SeededRandom random(context.seed);
    random.shuffle(plan.document_order);
    plan.description = fmt::format("random document order (seed {})", context.seed);
    return plan;
  }
};

std::unique_ptr<lory::BatcherPlugin> create() { return std::make_unique<RandomBatcher>(); }

}  // namespace lory_plugins::random_batcher

LORY_PLUGIN_METADATA_NO_PARAMS(LORY_PLUGIN_BATCHER, "random",
                               "Training documents shuffled with the run's seed, joined by end-of-document tokens")
LORY_BATCHER_FACTORY(lory_plugins::random_batcher::create)
