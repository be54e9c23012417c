// `hash`: Hash Layers (Roller et al., 2021), written against the installed lory SDK as the second
// example of an out-of-tree router. Every token goes to ONE expert chosen by a fixed hash of its
// token id (`key = "token"`), or of its position in the sequence (`key = "position"`): no router,
// nothing learned about routing, perfectly causal, and balanced as far as the token frequencies
// allow. The expert's output is used as is (gate 1), so the layer is a dense FFN per hash bucket.
#include <lory/core/param_declaration.h>
#include <lory/core/plugin.h>
#include <lory/nn/expert_dispatch.h>
#include <lory/nn/router_api.h>

#include <stdexcept>

namespace hash_example {

enum class Key { Token, Position };

struct Options {
  int64_t experts = 0, salt = 0;
  Key key = Key::Token;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.hash")
          .integer("experts", &Options::experts, 8, 1, 1024,
                   "E: SwiGLU experts per layer, one per hash bucket")
          .choice("key", &Options::key, {{"token", Key::Token}, {"position", Key::Position}},
                  Key::Token,
                  "what is hashed: the token id (Hash Layers) or the position in the sequence")
          .integer("salt", &Options::salt, 0, 0, 1 << 30,
                   "mixed into the hash: another salt gives another fixed token-to-expert map");
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec&) {
  return params().read(values);
}

class HashFeedForward final : public lory::FeedForward {
 public:
  HashFeedForward(const lory::FeedForwardSpec& spec, const Options& options)
      : layer_(spec.layer_index), options_(options) {
    experts_ = lory::register_experts(*this, spec, options.experts, spec.d_ff);
  }

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts;
    const auto index_options = torch::dtype(torch::kInt64).device(h_BLD.device());
    torch::Tensor key_BL;
    if (options_.key == Key::Token) {
      if (!context.token_ids_BL().defined()) {
        throw std::runtime_error(
            "router.hash: key = \"token\" needs the forward's token ids, which the model did not "
            "set (lory::RoutingContext::set_token_ids)");
      }
      key_BL = context.token_ids_BL().to(index_options);
    } else {
      key_BL = (torch::arange(L, index_options) + context.first_position()).expand({B, L});
    }
    // A multiplicative hash (Knuth) of key + salt, its high bits taken modulo E: neighbouring ids
    // land in unrelated buckets.
    const torch::Tensor mixed_BL =
        ((key_BL + options_.salt) * int64_t{2654435761}).remainder(int64_t{1} << 32);
    const torch::Tensor expert_X =
        mixed_BL.div(int64_t{1} << 16, "floor").remainder(E).reshape({-1});
    const lory::ExpertAssignments assignments{torch::arange(B * L, index_options), expert_X,
                                              torch::ones({B * L}, h_BLD.options())};
    const torch::Tensor y_XD =
        lory::dispatch_to_experts(h_BLD.reshape({B * L, D}), assignments, experts_);
    if (context.recording()) {
      lory::record_routing(context, layer_,
                           lory::assignment_weights(assignments, B * L, E).view({B, L, E}), {},
                           lory::tokens_per_expert(assignments, E));
    }
    return y_XD.view({B, L, D});
  }

  int64_t expert_count() const override { return options_.experts; }
  // A token's output depends on that token (and its position) alone.
  bool supports_incremental_decoding() const override { return true; }
  int64_t active_parameter_count() const override { return experts_.w_gate_EFD[0].numel() * 3; }
  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    lory::copy_dense_into_experts(experts_, dense);
  }

  std::string export_layout_json() const override {
    nlohmann::json layout = params().to_json(options_);
    layout["router"] = "hash";
    layout["tensors"] = {
        {"w_gate_EFD", "[E, F, D]"}, {"w_up_EFD", "[E, F, D]"}, {"w_down_EDF", "[E, D, F]"}};
    layout["rule"] =
        "k = token id (key = token) or position (key = position); e = (((k + salt) * 2654435761) "
        "mod 2^32) div 2^16 "
        "mod E; y = SwiGLU_e(h)";
    return layout.dump();
  }

 private:
  int64_t layer_;
  Options options_;
  lory::ExpertWeights experts_;
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<HashFeedForward, read_options>>();
}

}  // namespace hash_example

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "hash",
    "Hash Layers: each token to one expert chosen by a fixed hash of its token id or position "
    "(Roller et al., 2021; causal)",
    hash_example::params)
LORY_ROUTER_FACTORY(hash_example::create)
