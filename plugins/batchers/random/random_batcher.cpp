// The `random` batcher: training documents in a seeded random order, the standard way LMs are
// pre-trained and the baseline the similarity batcher is compared with. The instances cut from
// that stream are shuffled too (seeded): documents are often longer than a batch, and without it
// a batch would hold consecutive pieces of one or two documents.
#include <fmt/format.h>

#include <numeric>

#include "lory/core/batcher_api.h"
#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/core/seeded_random.h"

namespace lory_plugins::random_batcher {

struct Options {
  bool shuffle_instances = true;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("batcher.random")
          .flag("shuffle_instances", &Options::shuffle_instances, true,
                "shuffle the cut instances too (seeded); false = train on the stream in order");
  return declaration;
}

class RandomBatcher final : public lory::BatcherPlugin {
 public:
  lory::InstancePlan plan(const lory::BatcherContext& context,
                          const lory::ParamValues& values) override {
    const Options options = params().read(values);
    lory::InstancePlan plan;
    plan.document_order = context.corpus.documents_of_split(lory::Split::Train);
    lory::SeededRandom random(context.seed);
    random.shuffle(plan.document_order);
    if (options.shuffle_instances) {
      uint64_t stream = 0;
      for (uint32_t doc : plan.document_order) stream += context.corpus.document(doc).length + 1;
      plan.instance_order.resize(stream / static_cast<uint64_t>(context.context_length + 1));
      std::iota(plan.instance_order.begin(), plan.instance_order.end(), 0);
      random.shuffle(plan.instance_order);
    }
    plan.description =
        fmt::format("random document order{} (seed {})",
                    options.shuffle_instances ? ", shuffled instances" : "", context.seed);
    return plan;
  }
};

std::unique_ptr<lory::BatcherPlugin> create() { return std::make_unique<RandomBatcher>(); }

}  // namespace lory_plugins::random_batcher

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_BATCHER, "random",
    "Training documents shuffled with the run's seed, joined by end-of-document tokens; instances "
    "shuffled",
    lory_plugins::random_batcher::params)
LORY_BATCHER_FACTORY(lory_plugins::random_batcher::create)
