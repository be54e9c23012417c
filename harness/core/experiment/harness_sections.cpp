#include "core/experiment/harness_sections.h"

namespace lory {

namespace {

ParamSpec int_param(std::string name, int64_t fallback, double lo, double hi, std::string doc) {
  return ParamSpec{std::move(name), ParamType::Int, ParamValue(fallback), lo, hi, {},
                   std::move(doc)};
}
ParamSpec float_param(std::string name, double fallback, double lo, double hi, std::string doc) {
  return ParamSpec{std::move(name), ParamType::Float, ParamValue(fallback), lo, hi, {},
                   std::move(doc)};
}
ParamSpec string_param(std::string name, std::optional<std::string> fallback,
                       std::vector<std::string> choices, std::string doc) {
  std::optional<ParamValue> value;
  if (fallback) value = ParamValue(*fallback);
  return ParamSpec{std::move(name), ParamType::String,  value,         -HUGE_VAL,
                   HUGE_VAL,        std::move(choices), std::move(doc)};
}
ParamSpec bool_param(std::string name, bool fallback, std::string doc) {
  return ParamSpec{std::move(name), ParamType::Bool, ParamValue(fallback), -HUGE_VAL, HUGE_VAL, {},
                   std::move(doc)};
}

constexpr double kOpen = HUGE_VAL;

std::vector<HarnessSection> build_sections() {
  std::vector<HarnessSection> sections;
  sections.push_back(
      {"data",
       ParamSchema({
           string_param("corpus", std::nullopt, {},
                        "prepared corpus folder (lory-data prepare); a relative path is resolved "
                        "against the experiment file's folder"),
       }),
       std::nullopt});
  sections.push_back(
      {"model",
       ParamSchema({
           string_param("plugin", "transformer", {}, "model plugin"),
           int_param("context_length", 256, 8, 65536, "tokens per training sequence (L)"),
       }),
       PluginKind::Model});
  sections.push_back(
      {"router",
       ParamSchema({string_param("plugin", "dense", {}, "router plugin building every FFN layer")}),
       PluginKind::Router});
  sections.push_back({"batcher",
                      ParamSchema({string_param("plugin", "random", {},
                                                "batcher plugin planning training instances")}),
                      PluginKind::Batcher});
  sections.push_back(
      {"trainer",
       ParamSchema({
           int_param("seed", 1, 0, 2147483647,
                     "seed of initialisation, data order and dropout-free noise"),
           int_param("threads", 1, 1, 256,
                     "LibTorch intra-op threads of the training process (1 is fastest on 2 vCPUs "
                     "sharing one core)"),
           int_param("steps", 0, 0, kOpen, "optimizer steps; 0 = derived from `tokens`"),
           int_param("tokens", 0, 0, kOpen,
                     "training tokens; steps = ceil(tokens / (batch_size * context_length)); 0 = "
                     "use `steps`"),
           int_param("batch_size", 16, 1, kOpen, "sequences per optimizer step"),
           int_param("micro_batch_size", 0, 0, kOpen,
                     "sequences per forward/backward; gradients are accumulated; 0 = batch_size"),
           float_param("lr", 1e-3, 0, kOpen, "peak learning rate"),
           float_param("min_lr_ratio", 0.1, 0, 1,
                       "final learning rate of the cosine decay, relative to lr"),
           float_param("warmup_fraction", 0.05, 0, 1,
                       "fraction of steps of linear learning-rate warm-up"),
           float_param("weight_decay", 0.1, 0, kOpen,
                       "AdamW decoupled weight decay (matrices only)"),
           float_param("beta1", 0.9, 0, 1, "AdamW beta1"),
           float_param("beta2", 0.95, 0, 1, "AdamW beta2"),
           float_param("eps", 1e-8, 0, kOpen, "AdamW epsilon"),
           float_param("grad_clip", 1.0, 0, kOpen,
                       "clip the global gradient norm to this; 0 = no clipping"),
           float_param(
               "dense_warmup_fraction", 0.0, 0, 0.99,
               "train with a dense FFN for this fraction of steps, then copy it into every expert "
               "(upcycling; the Lory paper uses 0.05)"),
           string_param("upcycling_optimizer", "reset", {"reset", "copy"},
                        "AdamW state of the experts at upcycling: reset (m = v = 0, step count 0: "
                        "the first update "
                        "is about lr * sign(g)) or copy (each expert inherits the dense FFN's "
                        "moments and step "
                        "count; the router starts fresh)"),
           float_param("upcycling_lr_rewarmup_fraction", 0.0, 0, 0.99,
                       "after upcycling, ramp the learning rate linearly from 0 back to the "
                       "schedule over this "
                       "fraction of steps; 0 = no re-warm-up"),
           string_param(
               "precision", "fp32", {"fp32", "bf16"},
               "precision of the model's matrix multiplications: fp32, or bf16 (attention, every "
               "FFN and "
               "expert, the LM head; weights, gradients, optimizer state, norms, softmax, routing "
               "and the "
               "loss stay fp32); scoring, generation and task evaluation of the run use it too"),
           string_param("device", "cpu", {},
                        "where the run trains: cpu, cuda (the first GPU) or cuda:N; CUDA needs a "
                        "LibTorch built "
                        "with it"),
           int_param("log_every", 10, 1, kOpen, "steps between training-metric rows"),
           int_param("checkpoint_every", 0, 0, kOpen,
                     "steps between checkpoints; 0 = only at the end"),
       }),
       std::nullopt});
  sections.push_back({"eval",
                      ParamSchema({
                          int_param("every", 100, 0, kOpen,
                                    "steps between held-out evaluations; 0 = only at the end"),
                          int_param("batch_size", 8, 1, kOpen, "sequences per evaluation forward"),
                          int_param("tokens_per_domain", 32768, 0, kOpen,
                                    "held-out tokens evaluated per domain; 0 = all"),
                          bool_param("routing_stats", true,
                                     "record per layer x domain x expert routing statistics"),
                          int_param("skip_first_tokens", 0, 0, kOpen,
                                    "targets before this position of every sequence are not scored "
                                    "(e.g. the segment length, to "
                                    "leave out Lory's segment 1 under the paper rule)"),
                          bool_param("prompt_routing", false,
                                     "also evaluate with prompt-only routing (rows with mode = "
                                     "'prompt'): one routing decision per "
                                     "layer from the first prompt_length tokens"),
                          int_param("prompt_length", 128, 1, kOpen,
                                    "prompt tokens for prompt-only routing; they are not scored"),
                      }),
                      std::nullopt});
  return sections;
}

}  // namespace

const std::vector<HarnessSection>& harness_sections() {
  static const std::vector<HarnessSection> sections = build_sections();
  return sections;
}

const HarnessSection* find_harness_section(const std::string& name) {
  for (const auto& s : harness_sections()) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

}  // namespace lory
