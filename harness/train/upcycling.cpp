#include "upcycling.h"

#include "core/diagnostics.h"

namespace lory {

void upcycle_feed_forwards(LanguageModel& model, const FeedForwardBuilder& build_layer) {
  torch::NoGradGuard no_grad;
  for (int64_t layer = 0; layer < model.layer_count(); ++layer) {
    const auto dense = model.feed_forward(layer)->dense_weights();
    if (!dense) throw UserError("dense warm-up: the warm-up model's FFN exposes no dense weights to upcycle from");
    auto replacement = build_layer(model.feed_forward_spec(layer));
    replacement->upcycle_from(*dense);
    model.replace_feed_forward(layer, replacement);
  }
}

}  // namespace lory
