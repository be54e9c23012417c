#include "trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>

#include "adamw.h"
#include "checkpoint.h"
#include "core/support/kill_points.h"
#include "evaluator.h"
#include "linear_cross_entropy.h"
#include "lory/nn/precision.h"
#include "lr_schedule.h"
#include "router_metrics.h"
#include "routing_stability.h"
#include "stop_request.h"
#include "training_data.h"
#include "upcycling.h"

namespace lory {

namespace {

using Clock = std::chrono::steady_clock;

struct Settings {
  int64_t steps, batch_size, log_every, eval_every, checkpoint_every;
  int64_t micro_batch_size, accumulation;  // per rank; set once the group's size is known
  int64_t upcycle_at;  // step at which the dense warm-up ends; -1 without warm-up
  bool upcycling_copies_optimizer_state;
  int64_t rewarmup_steps;  // linear LR ramp after upcycling; 0 = none
  double grad_clip;
  LrSchedule schedule;
  AdamW::Options adamw;
  int64_t eval_batch_size, eval_tokens_per_domain, eval_skip_first_tokens, eval_prompt_length;
  bool routing_stats, eval_prompt_routing;
};

Settings read_settings(const RunSetup& setup) {
  const ParamValues& t = setup.config().section("trainer").values;
  const ParamValues& e = setup.config().section("eval").values;
  Settings s{};
  s.batch_size = t.get_int("batch_size");
  const int64_t tokens_per_step = s.batch_size * setup.context_length();
  s.steps = t.get_int("steps") > 0 ? t.get_int("steps")
                                   : (t.get_int("tokens") + tokens_per_step - 1) / tokens_per_step;
  s.log_every = t.get_int("log_every");
  s.eval_every = e.get_int("every");
  s.checkpoint_every = t.get_int("checkpoint_every");
  const double warmup = t.get_float("dense_warmup_fraction");
  s.upcycle_at =
      (warmup > 0 && !setup.router_is_dense_baseline())
          ? std::max<int64_t>(
                1, static_cast<int64_t>(std::llround(warmup * static_cast<double>(s.steps))))
          : -1;
  s.upcycling_copies_optimizer_state = t.get_string("upcycling_optimizer") == "copy";
  s.rewarmup_steps =
      s.upcycle_at > 0
          ? static_cast<int64_t>(std::llround(t.get_float("upcycling_lr_rewarmup_fraction") *
                                              static_cast<double>(s.steps)))
          : 0;
  s.grad_clip = t.get_float("grad_clip");
  s.schedule = {t.get_float("lr"), t.get_float("min_lr_ratio"),
                static_cast<int64_t>(
                    std::llround(t.get_float("warmup_fraction") * static_cast<double>(s.steps))),
                s.steps};
  s.adamw = {t.get_float("beta1"), t.get_float("beta2"), t.get_float("eps"),
             t.get_float("weight_decay")};
  s.eval_batch_size = e.get_int("batch_size");
  s.eval_tokens_per_domain = e.get_int("tokens_per_domain");
  s.routing_stats = e.get_bool("routing_stats");
  s.eval_skip_first_tokens = e.get_int("skip_first_tokens");
  s.eval_prompt_routing = e.get_bool("prompt_routing");
  s.eval_prompt_length = e.get_int("prompt_length");
  return s;
}

// The LR re-warm-up after upcycling: 1/R, 2/R, ..., 1 over the R steps from the upcycling step
// on (the step's schedule value times this), so the new experts and router are not hit by the
// peak learning rate at once. 1 before upcycling and without a re-warm-up.
double rewarmup_factor(const Settings& s, const TrainingState& state) {
  if (s.rewarmup_steps <= 0 || !state.upcycled) return 1.0;
  const int64_t since = state.step - state.upcycle_step;
  return std::min(1.0, static_cast<double>(since + 1) / static_cast<double>(s.rewarmup_steps));
}

std::vector<std::pair<std::string, torch::Tensor>> named_parameters(const LanguageModel& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : model.named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Upcycling happens after the dense warm-up; a router that cannot be upcycled from this dense
// model (experts of another width, a router without upcycle_from) must fail the cell now, with
// the key to change, not after the warm-up's steps. The trial layer is thrown away, and the random
// stream is restored, so the check changes no result.
void check_upcycling_possible(LanguageModel& model, RunSetup& setup) {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  torch::Tensor rng_state;
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    rng_state = generator.get_state();
  }
  std::string problem, build_problem;
  try {
    torch::NoGradGuard no_grad;
    const auto dense = model.feed_forward(0)->dense_weights();
    if (!dense) throw std::runtime_error("the warm-up model's FFN exposes no dense weights");
    std::shared_ptr<FeedForward> layer;
    try {
      layer = setup.build_router_layer(model.feed_forward_spec(0));
    } catch (const std::exception& e) {
      build_problem = e.what();  // the router's own error, not an upcycling one
    }
    if (layer) layer->upcycle_from(*dense);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state);
  }
  if (!build_problem.empty()) {
    throw UserError(
        fmt::format("router '{}' failed to build a layer: {}", setup.router_name(), build_problem));
  }
  if (!problem.empty()) {
    throw UserError(fmt::format(
        "trainer.dense_warmup_fraction > 0, but the dense warm-up model cannot be upcycled "
        "into '{}' layers: {}; set trainer.dense_warmup_fraction = 0 for this cell",
        setup.router_name(), problem));
  }
}

// One run's training, in the steps a reader looks for: set up (model, optimizer, data, resume),
// record what the run is, then step / log / evaluate / checkpoint until the last step, a
// divergence or a stop request. The order of the set-up is the order of the random draws
// (model init, then data), so it must not change.
class TrainingLoop {
 public:
  TrainingLoop(RunSetup& setup, ResultsStore& store, const RunRecord& run,
               const std::string& run_dir, DataParallel& group)
      : setup_(setup),
        store_(store),
        run_(run),
        group_(group),
        s_(read_settings(setup)),
        seed_(static_cast<uint64_t>(setup.config().section("trainer").values.get_int("seed"))),
        main_(group.is_main()),
        world_(group.world_size()),
        checkpoints_(run_dir),
        run_dir_(run_dir) {
    split_batch();
    torch::manual_seed(seed_);
    const std::optional<TrainingState> saved = checkpoints_.latest_state();
    start_dense_ = s_.upcycle_at > 0 && !(saved && saved->upcycled);
    model_ = setup_.build_model(start_dense_);
    if (start_dense_) check_upcycling_possible(*model_, setup_);
    optimizer_ = std::make_unique<AdamW>(s_.adamw);
    data_ = std::make_unique<TrainingData>(setup_.corpus_handle(), setup_.batcher(),
                                           setup_.batcher_params(), setup_.context_length(), seed_,
                                           cache_directory(store_.database().path()));
    if (saved) resume();
    resumed_ = saved.has_value();
    group_.broadcast_module(*model_);
    if (main_) record_run();
    evaluator_ =
        std::make_unique<Evaluator>(setup_.corpus(), setup_.context_length(), s_.eval_batch_size,
                                    s_.eval_tokens_per_domain, s_.eval_skip_first_tokens);
    if (main_)
      stability_ = std::make_unique<RoutingStability>(run_dir_, evaluator_->probe_tokens(2));
  }

  TrainOutcome run() {
    terminal_ = main_ && isatty(fileno(stdout));
    interval_start_ = run_start_ = Clock::now();
    start_step_ = state_.step;
    model_->train();
    while (state_.step < s_.steps) {
      if (s_.upcycle_at > 0 && !state_.upcycled && state_.step >= s_.upcycle_at) upcycle();
      const int64_t step = state_.step + 1;  // 1-based number of the step being taken
      const double lr = s_.schedule.at(state_.step) * rewarmup_factor(s_, state_);
      const bool log_step = step % s_.log_every == 0 || step == s_.steps;
      const StepResult result = take_step(step, lr, log_step);
      if (!std::isfinite(result.loss) || !std::isfinite(result.grad_norm)) {
        return {run_status::kDiverged,
                fmt::format("non-finite {} at step {} (loss {}, gradient norm {})",
                            std::isfinite(result.loss) ? "gradient" : "loss", step, result.loss,
                            result.grad_norm),
                state_.step};
      }
      kill_point("after_step", step);
      // Collective on every rank, before only rank 0 goes on to write.
      std::vector<MetricRow> router_rows;
      if (result.logged_context)
        add_router_metrics(*result.logged_context, step, group_, router_rows);
      if (log_step && main_) log(step, lr, result, std::move(router_rows));
      if ((s_.eval_every > 0 && step % s_.eval_every == 0) || step == s_.steps) evaluate(step);
      if (main_ && ((s_.checkpoint_every > 0 && step % s_.checkpoint_every == 0) ||
                    step == s_.steps || result.stopping)) {
        checkpoints_.save(*model_, *optimizer_, state_);
      }
      if (result.stopping && step < s_.steps) {
        if (main_) {
          std::printf("%sstopped at step %lld on request; checkpoint written\n",
                      terminal_ ? "\n" : "", static_cast<long long>(step));
        }
        return {run_status::kInterrupted, fmt::format("stopped on request at step {}", step),
                state_.step};
      }
    }
    if (terminal_) std::printf("\n");
    return {run_status::kDone, "", state_.step};
  }

 private:
  struct StepResult {
    double loss = 0, grad_norm = 0;
    bool stopping = false;                         // some rank was asked to stop
    std::optional<RoutingContext> logged_context;  // the recorded micro-batch of a logged step
  };

  // trainer.batch_size is the global batch: every rank takes an equal share of each step, in
  // micro-batches of trainer.micro_batch_size whose gradients accumulate.
  void split_batch() {
    const ParamValues& trainer = setup_.config().section("trainer").values;
    if (s_.batch_size % world_ != 0) {
      throw UserError(
          fmt::format("trainer.batch_size = {} must be a multiple of the {} data-parallel ranks",
                      s_.batch_size, world_));
    }
    const int64_t per_rank = s_.batch_size / world_;
    s_.micro_batch_size =
        trainer.get_int("micro_batch_size") > 0 ? trainer.get_int("micro_batch_size") : per_rank;
    if (per_rank % s_.micro_batch_size != 0) {
      throw UserError(fmt::format(
          "trainer.micro_batch_size = {} must divide the {} sequences each of the {} ranks takes "
          "per step",
          s_.micro_batch_size, per_rank, world_));
    }
    s_.accumulation = per_rank / s_.micro_batch_size;
  }

  void resume() {
    state_ = checkpoints_.restore(*model_, optimizer_.get());
    data_->seek(state_.data);
    if (!main_) return;
    // Rows an interrupted attempt wrote after its last checkpoint are written again by this one.
    store_.delete_rows_after(run_.id, state_.step);
    std::printf("resuming run %lld from step %lld (checkpoint in %s)\n",
                static_cast<long long>(run_.id), static_cast<long long>(state_.step),
                run_dir_.c_str());
  }

  // The run's attributes (sizes, data plan, budget coverage, threads) and its start line.
  void record_run() {
    store_.mark_running(run_.id, current_code_version(), current_host(), s_.steps,
                        setup_.corpus().checksum());
    // The views pair runs by these roles (a dense_baseline run is what MoE runs are compared with).
    store_.set_run_attribute(run_.id, "router_roles",
                             fmt::format("{}", fmt::join(setup_.router_roles(), ",")));
    // Where the checkpoints are, absolute: a copy of the database elsewhere still finds them.
    store_.set_run_attribute(run_.id, "checkpoint_dir",
                             std::filesystem::absolute(run_dir_).lexically_normal().string());
    store_.set_run_attribute(run_.id, "parameters_total",
                             std::to_string(count_parameters(*model_)));
    if (!start_dense_ || resumed_) {
      store_.set_run_attribute(run_.id, "parameters_active",
                               std::to_string(count_active_parameters(*model_)));
    }
    const InstanceStream& stream = data_->stream();
    store_.set_run_attribute(run_.id, "batcher_plan", stream.plan().description);
    store_.set_run_attribute(run_.id, "adjacent_same_domain_rate",
                             fmt::format("{:.6f}", stream.adjacent_same_domain_rate()));
    store_.set_run_attribute(run_.id, "random_order_same_domain_rate",
                             fmt::format("{:.6f}", stream.random_order_same_domain_rate()));
    store_.set_run_attribute(run_.id, "dropped_documents",
                             std::to_string(stream.plan().dropped_documents.size()));
    std::printf(
        "data: %s; %zu instances; adjacent documents share a domain %.1f%% of the time (random "
        "order: %.1f%%)\n",
        stream.plan().description.c_str(), stream.instance_count(),
        100 * stream.adjacent_same_domain_rate(), 100 * stream.random_order_same_domain_rate());
    // What the budget sees of the plan (core/instance_stream.h): the numbers that tell a batcher's
    // effect apart from fewer distinct tokens, repeated instances or less mixed batches.
    // A router that routes by segments declares segment_length: how often its segments follow
    // one of another document is what similarity batching can change.
    const ParamValues& router = setup_.config().section("router").plugin_params;
    const int64_t segment_length =
        router.has("segment_length") ? router.get_int("segment_length") : 0;
    const InstanceStream::Coverage coverage =
        stream.coverage(s_.steps * s_.batch_size, s_.batch_size, segment_length);
    if (segment_length > 0) {
      store_.set_run_attribute(run_.id, "data/cross_document_segments",
                               fmt::format("{:.6g}", coverage.cross_document_segments));
      store_.set_run_attribute(run_.id, "data/cross_document_same_domain",
                               fmt::format("{:.6g}", coverage.cross_document_same_domain));
      std::printf(
          "segments of %lld tokens: %.1f%% follow a segment of another main document (of those, "
          "%.1f%% of the same domain)\n",
          static_cast<long long>(segment_length), 100 * coverage.cross_document_segments,
          100 * coverage.cross_document_same_domain);
    }
    for (const auto& [name, value] : std::vector<std::pair<const char*, double>>{
             {"data/epochs", coverage.epochs},
             {"data/distinct_tokens", static_cast<double>(coverage.distinct_tokens)},
             {"data/repeated_instances", static_cast<double>(coverage.repeated_instances)},
             {"data/documents_per_instance", coverage.documents_per_instance},
             {"data/documents_per_batch", coverage.documents_per_batch},
             {"data/domains_per_batch", coverage.domains_per_batch},
             {"data/batch_domain_entropy", coverage.batch_domain_entropy},
             {"data/corpus_domain_entropy", coverage.corpus_domain_entropy}}) {
      store_.set_run_attribute(run_.id, name, fmt::format("{:.6g}", value));
    }
    std::printf(
        "budget: %.2f epochs, %lld distinct training tokens, %lld repeated instances; per batch "
        "%.1f documents, "
        "%.1f domains, domain entropy %.3f of %.3f nats\n",
        coverage.epochs, static_cast<long long>(coverage.distinct_tokens),
        static_cast<long long>(coverage.repeated_instances), coverage.documents_per_batch,
        coverage.domains_per_batch, coverage.batch_domain_entropy, coverage.corpus_domain_entropy);
    for (const auto& [name, value] : stream.plan().stats) {
      store_.set_run_attribute(run_.id, "batcher/" + name, fmt::format("{}", value));
      std::printf("  batcher %s = %g\n", name.c_str(), value);
    }
    store_.set_run_attribute(run_.id, "threads", std::to_string(torch::get_num_threads()));
    store_.set_run_attribute(run_.id, "world_size", std::to_string(world_));
    if (world_ > 1) {
      std::printf("data parallel: %d ranks, %lld sequences per rank per step\n", world_,
                  static_cast<long long>(s_.batch_size / world_));
    }
  }

  // The end of the dense warm-up: every FFN becomes a router layer started from the dense weights.
  void upcycle() {
    const UpcyclingOutcome upcycled = upcycle_feed_forwards(
        *model_, [&](const FeedForwardSpec& spec) { return setup_.build_router_layer(spec); },
        s_.upcycling_copies_optimizer_state ? optimizer_.get() : nullptr);
    group_.broadcast_module(*model_);
    state_.upcycled = true;
    state_.upcycle_step = state_.step;
    optimizer_->retain_only(named_parameters(*model_));
    if (!main_) return;
    store_.set_run_attribute(run_.id, "upcycle_step", std::to_string(state_.step));
    store_.set_run_attribute(run_.id, "upcycling_inherited_tensors",
                             std::to_string(upcycled.inherited_tensors));
    store_.set_run_attribute(run_.id, "parameters_total",
                             std::to_string(count_parameters(*model_)));
    store_.set_run_attribute(run_.id, "parameters_active",
                             std::to_string(count_active_parameters(*model_)));
    std::printf("%sstep %lld: dense warm-up over, FFNs upcycled into %s layers\n",
                terminal_ ? "\n" : "", static_cast<long long>(state_.step),
                setup_.router_name().c_str());
  }

  // Forward and backward over the micro-batches, gradients averaged over ranks, clipped, and one
  // optimizer update; a non-finite loss or gradient returns before the update.
  StepResult take_step(int64_t step, double lr, bool log_step) {
    StepResult result;
    double loss_sum = 0;
    for (int64_t micro = 0; micro < s_.accumulation; ++micro) {
      const TokenBatch batch = data_->next_shard(s_.micro_batch_size, group_.rank(), world_);
      // Every rank records the logged step: its routing statistics are combined over ranks.
      const bool record = log_step && micro + 1 == s_.accumulation;
      RoutingContext context(ForwardMode::Train, record);
      const torch::Tensor tokens_BL1 = batch.tokens_BL1.to(setup_.device());
      const torch::Tensor inputs_BL = tokens_BL1.slice(1, 0, -1);
      const torch::Tensor targets_BL = tokens_BL1.slice(1, 1);
      torch::Tensor lm_loss;
      {
        // The forward pass in trainer.precision; the backward follows the graph it recorded.
        MatmulPrecisionScope precision(setup_.precision(), setup_.device());
        lm_loss = language_model_loss(*model_, inputs_BL, targets_BL, context);
      }
      if (fault_injected("nan_loss", step))
        lm_loss = lm_loss * std::numeric_limits<double>::quiet_NaN();
      const torch::Tensor loss = lm_loss + context.total_aux_loss();
      (loss / static_cast<double>(s_.accumulation)).backward();
      loss_sum += lm_loss.item<double>();
      if (record) result.logged_context.emplace(std::move(context));
    }
    std::vector<torch::Tensor> grads;
    for (auto& p : model_->parameters()) {
      // The ranks' gradient buckets must list the same tensors: a parameter one rank's shard did
      // not reach (an expert no token chose) contributes zeros there.
      if (!p.grad().defined() && group_.distributed() && p.requires_grad())
        p.mutable_grad() = torch::zeros_like(p);
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    if (fault_injected("inf_grad", step) && !grads.empty()) {
      torch::NoGradGuard no_grad;
      grads.front().view({-1})[0] = std::numeric_limits<double>::infinity();
    }
    group_.average_gradients(grads);
    finish_layer_steps();
    // One small all-reduce carries the loss and whether any rank was asked to stop, so that the
    // ranks decide together (one rank leaving alone would leave the others waiting).
    std::vector<double> shared = {loss_sum / static_cast<double>(s_.accumulation),
                                  stop_requested() ? 1.0 : 0.0};
    group_.sum(shared);
    result.loss = shared[0] / world_;
    result.stopping = shared[1] > 0;
    {
      torch::NoGradGuard no_grad;
      for (const auto& g : grads) result.grad_norm += g.pow(2).sum().item<double>();
      result.grad_norm = std::sqrt(result.grad_norm);
    }
    if (!std::isfinite(result.loss) || !std::isfinite(result.grad_norm)) return result;
    if (s_.grad_clip > 0 && result.grad_norm > s_.grad_clip) {
      torch::NoGradGuard no_grad;
      for (auto& g : grads) g.mul_(s_.grad_clip / (result.grad_norm + 1e-6));
    }
    optimizer_->step(named_parameters(*model_), lr);
    for (auto& p : model_->parameters()) {
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
    state_.step = step;
    state_.data = data_->position();
    state_.tokens_seen += s_.batch_size * setup_.context_length();
    interval_tokens_ += s_.batch_size * setup_.context_length();
    ++interval_steps_;
    return result;
  }

  // The layers' own per-step updates (lory::FeedForward::finish_training_step), from their
  // accumulators summed over ranks.
  void finish_layer_steps() {
    for (int64_t layer = 0; layer < model_->layer_count(); ++layer) {
      const std::shared_ptr<FeedForward> ffn = model_->feed_forward(layer);
      for (torch::Tensor& accumulator : ffn->training_step_accumulators()) {
        if (group_.distributed()) group_.sum(accumulator);
      }
      ffn->finish_training_step();
    }
  }

  // The logged step's metrics (router statistics included) and its progress line.
  void log(int64_t step, double lr, const StepResult& result, std::vector<MetricRow> rows) {
    const double seconds = std::chrono::duration<double>(Clock::now() - interval_start_).count();
    const double tokens_per_s = static_cast<double>(interval_tokens_) / std::max(seconds, 1e-9);
    rows.push_back({step, "train/loss", result.loss});
    rows.push_back({step, "train/lr", lr});
    rows.push_back({step, "train/grad_norm", result.grad_norm});
    rows.push_back({step, "train/tokens_per_s", tokens_per_s});
    rows.push_back({step, "train/tokens", static_cast<double>(state_.tokens_seen)});
    if (group_.distributed()) {
      rows.push_back({step, "train/allreduce_s",
                      group_.take_allreduce_seconds() / static_cast<double>(interval_steps_)});
    }
    store_.write_metrics(run_.id, rows);
    const double elapsed = std::chrono::duration<double>(Clock::now() - run_start_).count();
    const double eta =
        elapsed / static_cast<double>(step - start_step_) * static_cast<double>(s_.steps - step);
    if (terminal_) {
      std::printf("\r  step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s   ",
                  static_cast<long long>(step), static_cast<long long>(s_.steps), result.loss, lr,
                  tokens_per_s, format_duration(eta).c_str());
    } else {
      std::printf("  step %lld/%lld loss %.4f lr %.2e grad_norm %.3f %.0f tok/s ETA %s\n",
                  static_cast<long long>(step), static_cast<long long>(s_.steps), result.loss, lr,
                  result.grad_norm, tokens_per_s, format_duration(eta).c_str());
    }
    std::fflush(stdout);
    interval_start_ = Clock::now();
    interval_tokens_ = 0;
    interval_steps_ = 0;
  }

  // Held-out evaluation under training routing, and under prompt routing when asked for.
  void evaluate(int64_t step) {
    std::vector<std::pair<std::string, EvalRouting>> modes = {
        {"default", {EvalRouting::Rule::Train, 0}}};
    if (s_.eval_prompt_routing)
      modes.push_back({"prompt", {EvalRouting::Rule::Prompt, s_.eval_prompt_length}});
    for (const auto& [mode, routing] : modes) {
      MatmulPrecisionScope precision(setup_.precision(), setup_.device());
      const EvalResult result =
          evaluator_->evaluate(*model_, step, mode, routing, s_.routing_stats, &group_);
      if (!main_) continue;
      store_.write_evals(run_.id, result.evals);
      store_.write_routing_stats(run_.id, result.routing);
      store_.write_routing_layer_stats(run_.id, result.layers);
      for (const EvalRow& row : result.evals) {
        if (row.domain != "all") continue;
        std::printf(
            "%seval step %lld (%s routing): loss %.4f, ppl %.2f over %lld held-out tokens\n",
            terminal_ ? "\n" : "", static_cast<long long>(step), mode.c_str(), row.loss, row.ppl,
            static_cast<long long>(row.tokens));
      }
    }
    if (main_) {
      MatmulPrecisionScope precision(setup_.precision(), setup_.device());
      stability_->save(*model_, step);
      if (step == s_.steps) store_.write_metrics(run_.id, stability_->compare_with(step));
    }
  }

  RunSetup& setup_;
  ResultsStore& store_;
  const RunRecord& run_;
  DataParallel& group_;
  Settings s_;
  const uint64_t seed_;
  const bool main_;  // only rank 0 writes rows, checkpoints and progress
  const int world_;
  CheckpointStore checkpoints_;
  const std::string run_dir_;
  bool start_dense_ = false, resumed_ = false, terminal_ = false;
  std::shared_ptr<LanguageModel> model_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<TrainingData> data_;
  std::unique_ptr<Evaluator> evaluator_;
  std::unique_ptr<RoutingStability> stability_;  // rank 0 only
  TrainingState state_;
  Clock::time_point interval_start_, run_start_;
  int64_t interval_tokens_ = 0, interval_steps_ = 0, start_step_ = 0;
};

}  // namespace

TrainOutcome train_run(RunSetup& setup, ResultsStore& store, const RunRecord& run,
                       const std::string& run_dir, DataParallel& group) {
  return TrainingLoop(setup, store, run, run_dir, group).run();
}

}  // namespace lory
