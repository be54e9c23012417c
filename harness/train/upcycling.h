// Dense warm-up, then upcycling: every block's dense FFN is replaced by a layer of the
// configured router whose experts all start as copies of it (the Lory paper trains dense for the
// first 5% of steps). Any router that implements FeedForward::upcycle_from can be upcycled.
#pragma once

#include <functional>
#include <memory>

#include "lory/model_api.h"

namespace lory {

using FeedForwardBuilder = std::function<std::shared_ptr<FeedForward>(const FeedForwardSpec&)>;

void upcycle_feed_forwards(LanguageModel& model, const FeedForwardBuilder& build_layer);

}  // namespace lory
