// Dense warm-up, then upcycling: every block's dense FFN is replaced by a layer of the
// configured router whose experts all start as copies of it (the Lory paper trains dense for the
// first 5% of steps). Any router that implements FeedForward::upcycle_from can be upcycled.
//
// What the optimizer does at that step is a recorded choice (trainer.upcycling_optimizer):
//   reset  the dense FFN's AdamW state is dropped; every expert starts with m = v = 0 and a step
//          count of 0, so its first bias-corrected update is about lr * sign(g) per element, the
//          largest step Adam takes (what the harness did before the option existed);
//   copy   every expert inherits the dense FFN's moments and step count, so it goes on as the
//          dense FFN would have; the router and anything else new start fresh.
// Which parameters are copies is found without knowing the router's layout: a parameter is a
// copy when a layer upcycled from all-zero weights holds zeros in it and one upcycled from
// all-one weights holds ones; the moments go through the router's own upcycle_from, so they land
// where the weights did.
#pragma once

#include <functional>
#include <memory>

#include "adamw.h"
#include "lory/nn/model_api.h"

namespace lory {

using FeedForwardBuilder = std::function<std::shared_ptr<FeedForward>(const FeedForwardSpec&)>;

struct UpcyclingOutcome {
  int64_t inherited_tensors = 0;  // parameters that took over the dense FFN's optimizer state
  int64_t fresh_tensors = 0;      // new parameters (routers) that start with none
};

// With `inherit_into` set, the copies' optimizer state is written into it (the `copy` recipe);
// with nullptr nothing is (the `reset` recipe: the caller drops the dense FFN's state).
UpcyclingOutcome upcycle_feed_forwards(LanguageModel& model, const FeedForwardBuilder& build_layer,
                                       AdamW* inherit_into = nullptr);

}  // namespace lory
