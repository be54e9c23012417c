#include "trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

#include "adamw.h"
#include "core/kill_points.h"
#include "stop_request.h"
#include "checkpoint.h"
#include "evaluator.h"
#include "lr_schedule.h"
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
  int64_t inject_nan_at;
  int64_t inject_nan_grad_at;
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
  s.steps = t.get_int("steps") > 0 ? t.get_int("steps") : (t.get_int("tokens") + tokens_per_step - 1) / tokens_per_step;
  s.log_every = t.get_int("log_every");
  s.eval_every = e.get_int("every");
  s.checkpoint_every = t.get_int("checkpoint_every");
  const double warmup = t.get_float("dense_warmup_fraction");
  s.upcycle_at = (warmup > 0 && setup.router_name() != "dense")
                     ? std::max<int64_t>(1, static_cast<int64_t>(std::llround(warmup * static_cast<double>(s.steps))))
                     : -1;
  s.upcycling_copies_optimizer_state = t.get_string("upcycling_optimizer") == "copy";
  s.rewarmup_steps = s.upcycle_at > 0 ? static_cast<int64_t>(std::llround(t.get_float("upcycling_lr_rewarmup_fraction") *
                                                                          static_cast<double>(s.steps)))
                                      : 0;
  s.grad_clip = t.get_float("grad_clip");
  s.inject_nan_at = t.get_int("inject_nan_at_step");
  s.inject_nan_grad_at = t.get_int("inject_nan_grad_at_step");
  s.schedule = {t.get_float("lr"), t.get_float("min_lr_ratio"),
                static_cast<int64_t>(std::llround(t.get_float("warmup_fraction") * static_cast<double>(s.steps))),
                s.steps};
  s.adamw = {t.get_float("beta1"), t.get_float("beta2"), t.get_float("eps"), t.get_float("weight_decay")};
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

// The training metrics of one logged step, under "router/...": the routers' statistics per layer
// and their mean over layers, and the aux losses summed over layers; each is combined over
// data-parallel ranks by its rule.
void add_router_metrics(const RoutingContext& context, int64_t step, DataParallel& group,
                        std::vector<MetricRow>& rows) {
  std::vector<std::pair<MetricRow, Reduce>> local;
  std::map<std::string, std::tuple<double, int64_t, Reduce>> mean_over_layers;
  for (const RoutingRecord& record : context.records()) {
    for (const RoutingStat& stat : record.stats) {
      local.push_back({{step, fmt::format("router/layer{}/{}", record.layer, stat.name), stat.value}, stat.reduce});
      auto& [sum, count, reduce] = mean_over_layers[stat.name];
      sum += stat.value;
      ++count;
      reduce = stat.reduce;
    }
  }
  for (const auto& [name, entry] : mean_over_layers) {
    const auto& [sum, count, reduce] = entry;
    local.push_back({{step, "router/" + name, sum / static_cast<double>(count)}, reduce});
  }
  std::map<std::string, std::pair<double, Reduce>> aux_sums;
  for (const auto& [layer, stat] : context.aux_stats()) {
    aux_sums[stat.name].first += stat.value;
    aux_sums[stat.name].second = stat.reduce;
  }
  for (const auto& [name, entry] : aux_sums) local.push_back({{step, name, entry.first}, entry.second});

  // Every rank holds the same rows in the same order (the same model, each on its own equal
  // shard), so they are combined entry by entry: maxima maximised; everything else, a mean over a
  // shard (statistics) or a loss of a shard (aux losses), averaged.
  if (group.distributed()) {
    std::vector<double> summed(local.size(), 0.0), maximised(local.size(), 0.0);
    for (size_t i = 0; i < local.size(); ++i) {
      (local[i].second == Reduce::Max ? maximised : summed)[i] = local[i].first.value;
    }
    group.sum(summed);
    group.max(maximised);
    for (size_t i = 0; i < local.size(); ++i) {
      local[i].first.value = local[i].second == Reduce::Max ? maximised[i]
                                                            : summed[i] / static_cast<double>(group.world_size());
    }
  }
  for (auto& [row, reduce] : local) rows.push_back(std::move(row));
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
  std::string problem;
  try {
    torch::NoGradGuard no_grad;
    const auto dense = model.feed_forward(0)->dense_weights();
    if (!dense) throw std::runtime_error("the warm-up model's FFN exposes no dense weights");
    setup.build_router_layer(model.feed_forward_spec(0))->upcycle_from(*dense);
  } catch (const std::exception& e) {
    problem = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng_state);
  }
  if (!problem.empty()) {
    throw UserError(fmt::format("trainer.dense_warmup_fraction > 0, but the dense warm-up model cannot be upcycled "
                                "into '{}' layers: {}; set trainer.dense_warmup_fraction = 0 for this cell",
                                setup.router_name(), problem));
  }
}

}  // namespace

TrainOutcome train_run(RunSetup& setup, ResultsStore& store, const RunRecord& run, const std::string& run_dir,
                       DataParallel& group) {
  Settings s = read_settings(setup);
  const ParamValues& trainer_config = setup.config().section("trainer").values;
  const uint64_t seed = static_cast<uint64_t>(trainer_config.get_int("seed"));
  const bool main = group.is_main();  // only rank 0 writes rows, checkpoints and progress
  const int world = group.world_size();
  // trainer.batch_size is the global batch: every rank takes an equal share of each step.
  if (s.batch_size % world != 0) {
    throw UserError(fmt::format("trainer.batch_size = {} must be a multiple of the {} data-parallel ranks",
                                s.batch_size, world));
  }
  const int64_t per_rank = s.batch_size / world;
  s.micro_batch_size = trainer_config.get_int("micro_batch_size") > 0 ? trainer_config.get_int("micro_batch_size") : per_rank;
  if (per_rank % s.micro_batch_size != 0) {
    throw UserError(fmt::format("trainer.micro_batch_size = {} must divide the {} sequences each of the {} ranks takes "
                                "per step",
                                s.micro_batch_size, per_rank, world));
  }
  s.accumulation = per_rank / s.micro_batch_size;
  torch::manual_seed(seed);

  CheckpointStore checkpoints(run_dir);
  const std::optional<TrainingState> saved = checkpoints.latest_state();
  TrainingState state;
  const bool start_dense = s.upcycle_at > 0 && !(saved && saved->upcycled);
  std::shared_ptr<LanguageModel> model = setup.build_model(start_dense);
  if (start_dense) check_upcycling_possible(*model, setup);
  AdamW optimizer(s.adamw);
  TrainingData data(setup.corpus_handle(), setup.batcher(), setup.batcher_params(), setup.context_length(), seed,
                    cache_directory(store.database().path()));
  if (saved) {
    state = checkpoints.restore(*model, &optimizer);
    data.seek(state.data);
    if (main) {
      // Rows an interrupted attempt wrote after its last checkpoint are written again below.
      store.delete_rows_after(run.id, state.step);
      std::printf("resuming run %lld from step %lld (checkpoint in %s)\n", static_cast<long long>(run.id),
                  static_cast<long long>(state.step), run_dir.c_str());
    }
  }
  group.broadcast_module(*model);
  const InstanceStream& stream = data.stream();
  if (main) {
    store.mark_running(run.id, current_code_version(), current_host(), s.steps, setup.corpus().checksum());
    store.set_run_attribute(run.id, "parameters_total", std::to_string(count_parameters(*model)));
    if (!start_dense || saved) {
      store.set_run_attribute(run.id, "parameters_active", std::to_string(count_active_parameters(*model)));
    }
    store.set_run_attribute(run.id, "batcher_plan", stream.plan().description);
    store.set_run_attribute(run.id, "adjacent_same_domain_rate",
                            fmt::format("{:.6f}", stream.adjacent_same_domain_rate()));
    store.set_run_attribute(run.id, "random_order_same_domain_rate",
                            fmt::format("{:.6f}", stream.random_order_same_domain_rate()));
    store.set_run_attribute(run.id, "dropped_documents", std::to_string(stream.plan().dropped_documents.size()));
    std::printf("data: %s; %zu instances; adjacent documents share a domain %.1f%% of the time (random order: %.1f%%)\n",
                stream.plan().description.c_str(), stream.instance_count(), 100 * stream.adjacent_same_domain_rate(),
                100 * stream.random_order_same_domain_rate());
    // What the budget sees of the plan (lory/instance_stream.h): the numbers that tell a batcher's
    // effect apart from fewer distinct tokens, repeated instances or less mixed batches.
    const InstanceStream::Coverage coverage = stream.coverage(s.steps * s.batch_size, s.batch_size);
    for (const auto& [name, value] : std::vector<std::pair<const char*, double>>{
             {"data/epochs", coverage.epochs},
             {"data/distinct_tokens", static_cast<double>(coverage.distinct_tokens)},
             {"data/repeated_instances", static_cast<double>(coverage.repeated_instances)},
             {"data/documents_per_instance", coverage.documents_per_instance},
             {"data/documents_per_batch", coverage.documents_per_batch},
             {"data/domains_per_batch", coverage.domains_per_batch},
             {"data/batch_domain_entropy", coverage.batch_domain_entropy},
             {"data/corpus_domain_entropy", coverage.corpus_domain_entropy}}) {
      store.set_run_attribute(run.id, name, fmt::format("{:.6g}", value));
    }
    std::printf("budget: %.2f epochs, %lld distinct training tokens, %lld repeated instances; per batch %.1f documents, "
                "%.1f domains, domain entropy %.3f of %.3f nats\n",
                coverage.epochs, static_cast<long long>(coverage.distinct_tokens),
                static_cast<long long>(coverage.repeated_instances), coverage.documents_per_batch,
                coverage.domains_per_batch, coverage.batch_domain_entropy, coverage.corpus_domain_entropy);
    for (const auto& [name, value] : stream.plan().stats) {
      store.set_run_attribute(run.id, "batcher/" + name, fmt::format("{}", value));
      std::printf("  batcher %s = %g\n", name.c_str(), value);
    }
    store.set_run_attribute(run.id, "threads", std::to_string(torch::get_num_threads()));
    store.set_run_attribute(run.id, "world_size", std::to_string(world));
    if (world > 1) std::printf("data parallel: %d ranks, %lld sequences per rank per step\n", world, static_cast<long long>(per_rank));
  }

  const Evaluator evaluator(setup.corpus(), setup.context_length(), s.eval_batch_size, s.eval_tokens_per_domain,
                            s.eval_skip_first_tokens);
  const bool terminal = main && isatty(fileno(stdout));
  std::vector<MetricRow> pending;
  auto interval_start = Clock::now();
  int64_t interval_tokens = 0, interval_steps = 0;
  const auto run_start = Clock::now();
  const int64_t start_step = state.step;
  model->train();

  const auto evaluate_and_store = [&](int64_t step) {
    std::vector<std::pair<std::string, EvalRouting>> modes = {{"default", {EvalRouting::Rule::Train, 0}}};
    if (s.eval_prompt_routing) modes.push_back({"prompt", {EvalRouting::Rule::Prompt, s.eval_prompt_length}});
    for (const auto& [mode, routing] : modes) {
      const EvalResult result = evaluator.evaluate(*model, step, mode, routing, s.routing_stats, &group);
      if (!main) continue;
      store.write_evals(run.id, result.evals);
      store.write_routing_stats(run.id, result.routing);
      store.write_routing_layer_stats(run.id, result.layers);
      for (const EvalRow& row : result.evals) {
        if (row.domain != "all") continue;
        std::printf("%seval step %lld (%s routing): loss %.4f, ppl %.2f over %lld held-out tokens\n",
                    terminal ? "\n" : "", static_cast<long long>(step), mode.c_str(), row.loss, row.ppl,
                    static_cast<long long>(row.tokens));
      }
    }
  };

  while (state.step < s.steps) {
    if (s.upcycle_at > 0 && !state.upcycled && state.step >= s.upcycle_at) {
      const UpcyclingOutcome upcycled =
          upcycle_feed_forwards(*model, [&](const FeedForwardSpec& spec) { return setup.build_router_layer(spec); },
                                s.upcycling_copies_optimizer_state ? &optimizer : nullptr);
      group.broadcast_module(*model);
      state.upcycled = true;
      state.upcycle_step = state.step;
      optimizer.retain_only(named_parameters(*model));
      if (main) {
        store.set_run_attribute(run.id, "upcycle_step", std::to_string(state.step));
        store.set_run_attribute(run.id, "upcycling_inherited_tensors", std::to_string(upcycled.inherited_tensors));
        store.set_run_attribute(run.id, "parameters_total", std::to_string(count_parameters(*model)));
        store.set_run_attribute(run.id, "parameters_active", std::to_string(count_active_parameters(*model)));
        std::printf("%sstep %lld: dense warm-up over, FFNs upcycled into %s layers\n", terminal ? "\n" : "",
                    static_cast<long long>(state.step), setup.router_name().c_str());
      }
    }
    const int64_t step = state.step + 1;  // 1-based number of the step being taken
    const double lr = s.schedule.at(state.step) * rewarmup_factor(s, state);
    const bool log_step = step % s.log_every == 0 || step == s.steps;
    double loss_sum = 0;
    std::optional<RoutingContext> logged_context;
    for (int64_t micro = 0; micro < s.accumulation; ++micro) {
      const TokenBatch batch = data.next_shard(s.micro_batch_size, group.rank(), world);
      // Every rank records the logged step: its routing statistics are combined over ranks.
      const bool record = log_step && micro + 1 == s.accumulation;
      RoutingContext context(ForwardMode::Train, record);
      const torch::Tensor inputs_BL = batch.tokens_BL1.slice(1, 0, -1);
      const torch::Tensor targets_BL = batch.tokens_BL1.slice(1, 1);
      const torch::Tensor logits_BLV = model->forward(inputs_BL, context);
      torch::Tensor lm_loss =
          torch::nn::functional::cross_entropy(logits_BLV.reshape({-1, logits_BLV.size(-1)}), targets_BL.reshape({-1}));
      if (step == s.inject_nan_at) lm_loss = lm_loss * std::numeric_limits<double>::quiet_NaN();
      const torch::Tensor loss = lm_loss + context.total_aux_loss();
      (loss / static_cast<double>(s.accumulation)).backward();
      loss_sum += lm_loss.item<double>();
      if (record) logged_context.emplace(std::move(context));
    }
    std::vector<torch::Tensor> grads;
    for (auto& p : model->parameters()) {
      // The ranks' gradient buckets must list the same tensors: a parameter one rank's shard did
      // not reach (an expert no token chose) contributes zeros there.
      if (!p.grad().defined() && group.distributed() && p.requires_grad()) p.mutable_grad() = torch::zeros_like(p);
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    if (step == s.inject_nan_grad_at && !grads.empty()) {
      torch::NoGradGuard no_grad;
      grads.front().view({-1})[0] = std::numeric_limits<double>::infinity();
    }
    group.average_gradients(grads);
    // One small all-reduce carries the loss and whether any rank was asked to stop, so that the
    // ranks decide together (one rank leaving alone would leave the others waiting).
    std::vector<double> shared = {loss_sum / static_cast<double>(s.accumulation), stop_requested() ? 1.0 : 0.0};
    group.sum(shared);
    const double train_loss = shared[0] / world;
    const bool stopping = shared[1] > 0;
    double grad_norm = 0;
    {
      torch::NoGradGuard no_grad;
      for (const auto& g : grads) grad_norm += g.pow(2).sum().item<double>();
      grad_norm = std::sqrt(grad_norm);
    }
    if (!std::isfinite(train_loss) || !std::isfinite(grad_norm)) {
      if (main && !pending.empty()) store.write_metrics(run.id, pending);
      return {run_status::kDiverged,
              fmt::format("non-finite {} at step {} (loss {}, gradient norm {})",
                          std::isfinite(train_loss) ? "gradient" : "loss", step, train_loss, grad_norm),
              state.step};
    }
    if (s.grad_clip > 0 && grad_norm > s.grad_clip) {
      torch::NoGradGuard no_grad;
      for (auto& g : grads) g.mul_(s.grad_clip / (grad_norm + 1e-6));
    }
    optimizer.step(named_parameters(*model), lr);
    for (auto& p : model->parameters()) {
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
    }
    state.step = step;
    state.data = data.position();
    state.tokens_seen += s.batch_size * setup.context_length();
    interval_tokens += s.batch_size * setup.context_length();
    ++interval_steps;
    kill_point("after_step", step);

    // Collective on every rank, before only rank 0 goes on to write.
    std::vector<MetricRow> router_rows;
    if (logged_context) add_router_metrics(*logged_context, step, group, router_rows);
    if (log_step && main) {
      pending.insert(pending.end(), router_rows.begin(), router_rows.end());
      const double seconds = std::chrono::duration<double>(Clock::now() - interval_start).count();
      const double tokens_per_s = static_cast<double>(interval_tokens) / std::max(seconds, 1e-9);
      pending.push_back({step, "train/loss", train_loss});
      pending.push_back({step, "train/lr", lr});
      pending.push_back({step, "train/grad_norm", grad_norm});
      pending.push_back({step, "train/tokens_per_s", tokens_per_s});
      pending.push_back({step, "train/tokens", static_cast<double>(state.tokens_seen)});
      if (group.distributed()) {
        pending.push_back({step, "train/allreduce_s", group.take_allreduce_seconds() / static_cast<double>(interval_steps)});
      }
      store.write_metrics(run.id, pending);
      pending.clear();
      const double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
      const double eta = elapsed / static_cast<double>(step - start_step) * static_cast<double>(s.steps - step);
      if (terminal) {
        std::printf("\r  step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s   ", static_cast<long long>(step),
                    static_cast<long long>(s.steps), train_loss, lr, tokens_per_s, format_duration(eta).c_str());
      } else {
        std::printf("  step %lld/%lld loss %.4f lr %.2e grad_norm %.3f %.0f tok/s ETA %s\n", static_cast<long long>(step),
                    static_cast<long long>(s.steps), train_loss, lr, grad_norm, tokens_per_s,
                    format_duration(eta).c_str());
      }
      std::fflush(stdout);
      interval_start = Clock::now();
      interval_tokens = 0;
      interval_steps = 0;
    }
    if ((s.eval_every > 0 && step % s.eval_every == 0) || step == s.steps) evaluate_and_store(step);
    if (main && ((s.checkpoint_every > 0 && step % s.checkpoint_every == 0) || step == s.steps || stopping)) {
      checkpoints.save(*model, optimizer, state);
    }
    if (stopping && step < s.steps) {
      if (main && !pending.empty()) store.write_metrics(run.id, pending);
      if (main) {
        std::printf("%sstopped at step %lld on request; checkpoint written\n", terminal ? "\n" : "",
                    static_cast<long long>(step));
      }
      return {run_status::kInterrupted, fmt::format("stopped on request at step {}", step), state.step};
    }
  }
  if (terminal) std::printf("\n");
  return {run_status::kDone, "", state.step};
}

}  // namespace lory
