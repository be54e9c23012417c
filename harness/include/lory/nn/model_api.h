// The model plugin interface: a model builds the network from its parameters and asks a
// FeedForwardFactory (the router) for the FFN sub-layer of each block.
#pragma once

#include <functional>
#include <memory>

#include "lory/abi/plugin_abi.h"
#include "lory/core/param_values.h"
#include "lory/nn/feed_forward.h"

namespace lory {

struct ModelSpec {
  int64_t vocab_size = 0;      // from the corpus
  int64_t context_length = 0;  // the longest sequence the model is asked to process
};

using FeedForwardFactory = std::function<std::shared_ptr<FeedForward>(const FeedForwardSpec&)>;

class LanguageModel : public torch::nn::Module {
 public:
  // tokens_BL (int64) -> logits_BLV. Causal: logits at position t depend on tokens <= t only
  // (up to the documented first-segment leak of segment routers).
  virtual torch::Tensor forward(const torch::Tensor& tokens_BL, RoutingContext& context) = 0;
  // tokens_BL -> the final hidden states h_BLD that the LM head reads (document embeddings for
  // the similarity batcher: `lory embed`).
  virtual torch::Tensor hidden_states(const torch::Tensor& tokens_BL, RoutingContext& context) = 0;
  // The LM head as one [V, D] matrix when forward() is exactly hidden_states() @ W.T: the trainer
  // then forms the loss over chunks of tokens (train/linear_cross_entropy.h) and never holds the
  // [B, L, V] logits. Undefined (the default) when the output is not that map; the trainer then
  // takes forward()'s logits.
  virtual torch::Tensor output_projection_VD() const { return {}; }

  // Whether forward() takes a context with a DecodeState (lory/nn/decode_state.h): only the new
  // tokens, attention over the cached keys and values of earlier ones. True when the model and
  // every FFN layer support it.
  virtual bool supports_incremental_decoding() const { return false; }
  // What `lory export` writes beside the weights so that the model can be rebuilt elsewhere
  // without reading this plugin's source: a JSON object with the resolved sizes, each tensor's
  // name pattern and layout, and the conventions (normalisation, positions, attention). "{}"
  // when the plugin says nothing.
  virtual std::string export_layout_json() const { return "{}"; }

  virtual int64_t layer_count() const = 0;
  virtual FeedForwardSpec feed_forward_spec(int64_t layer) const = 0;
  virtual std::shared_ptr<FeedForward> feed_forward(int64_t layer) const = 0;
  // Swaps a block's FFN (upcycling from a dense warm-up); the new module is registered under the
  // old one's name.
  virtual void replace_feed_forward(int64_t layer, std::shared_ptr<FeedForward> replacement) = 0;
};

class ModelPlugin {
 public:
  static constexpr LoryPluginKind kKind = LORY_PLUGIN_MODEL;
  static constexpr const char* kFactoryAlias = "lory_create_model";

  virtual ~ModelPlugin() = default;
  virtual std::shared_ptr<LanguageModel> build(const ModelSpec& spec, const ParamValues& params,
                                               const FeedForwardFactory& feed_forward_factory) = 0;
};

}  // namespace lory
