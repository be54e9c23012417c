// A well-formed test plugin (torch-free) with one parameter of every type: what the loader tests
// load.
#include <algorithm>

#include "lory/core/batcher_api.h"
#include "lory/core/plugin.h"

namespace lory_test_plugins::good {

class ReverseBatcher final : public lory::BatcherPlugin {
 public:
  lory::InstancePlan plan(const lory::BatcherContext& context,
                          const lory::ParamValues& params) override {
    lory::InstancePlan plan;
    plan.document_order = context.corpus.documents_of_split(lory::Split::Train);
    if (params.get_bool("reverse"))
      std::reverse(plan.document_order.begin(), plan.document_order.end());
    plan.description = params.get_string("note");
    return plan;
  }
};

std::unique_ptr<lory::BatcherPlugin> create() { return std::make_unique<ReverseBatcher>(); }

const LoryParamSpec kParams[] = {
    {"reverse", LORY_PARAM_BOOL, "true", -LORY_UNBOUNDED, LORY_UNBOUNDED, nullptr,
     "reverse the document order"},
    {"window", LORY_PARAM_INT, "4", 1, 64, nullptr, "an integer in [1, 64]"},
    {"ratio", LORY_PARAM_FLOAT, "0.5", 0, 1, nullptr, "a float in [0, 1]"},
    {"note", LORY_PARAM_STRING, "hello", -LORY_UNBOUNDED, LORY_UNBOUNDED, "hello|world",
     "one of two words"},
};

}  // namespace lory_test_plugins::good

LORY_PLUGIN_METADATA(LORY_PLUGIN_BATCHER, "test_batcher",
                     "Test batcher: training documents in reverse order",
                     lory_test_plugins::good::kParams)
LORY_BATCHER_FACTORY(lory_test_plugins::good::create)
