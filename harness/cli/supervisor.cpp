#include "supervisor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "child_programs.h"
#include "core/store/results_reader.h"
#include "core/store/results_store.h"
#include "core/support/text_table.h"
#include "lory/core/corpus.h"
#include "lory/core/seeded_random.h"
#include "supervisor_lock.h"
#include "worker_liveness.h"

extern char** environ;

namespace lory::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

volatile sig_atomic_t interrupts = 0;
void on_interrupt(int) { interrupts = interrupts + 1; }

struct PendingCell {
  size_t index;  // into experiment.cells
  int64_t run_id;
};

struct RunningCell {
  PendingCell cell;
  std::vector<pid_t> ranks;  // every process of the cell (one per data-parallel rank)
  std::set<pid_t> alive;
  std::string first_failure;     // how the first rank that failed ended
  int first_failure_status = 0;  // its wait status
  Clock::time_point started;
};

// A free TCP port on the loopback interface for a cell's process group.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  int port = 29500;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

// A worker ended by a signal sent from outside it (kill, the OOM killer, a shutdown, a terminal
// hang-up) was interrupted, not wrong: its cell resumes from its checkpoint on a plain rerun.
// Signals a process raises by its own fault (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, ...) mark a
// failed cell, retried only with --retry-failed.
bool killed_from_outside(int status) {
  if (!WIFSIGNALED(status)) return false;
  const int signal_number = WTERMSIG(status);
  return signal_number == SIGKILL || signal_number == SIGTERM || signal_number == SIGINT ||
         signal_number == SIGHUP;
}

std::string describe_ending(int status) {
  if (WIFEXITED(status)) return fmt::format("worker exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int signal_number = WTERMSIG(status);
    return fmt::format("worker was killed by signal {} ({}){}", signal_number,
                       strsignal(signal_number),
                       signal_number == SIGKILL ? "; out of memory or killed from outside" : "");
  }
  return "worker ended abnormally";
}

std::string format_seconds(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  return s >= 60 ? fmt::format("{}m{:02d}s", s / 60, s % 60) : fmt::format("{}s", s);
}

pid_t spawn_worker(const std::vector<std::string>& arguments, const std::string& log_file,
                   const std::vector<std::string>& extra_environment) {
  std::vector<char*> argv;
  for (const auto& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // getenv returns the first match, so a variable the supervisor sets must replace an inherited
  // one (a RANK or MASTER_PORT left in the shell would otherwise win). The data-parallel variables
  // are never inherited: a cell's process group is the supervisor's to describe.
  auto name_of = [](const char* entry) { return std::string(entry, std::strcspn(entry, "=")); };
  std::set<std::string> replaced = {"RANK",        "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                    "MASTER_ADDR", "MASTER_PORT"};
  for (const auto& e : extra_environment) replaced.insert(name_of(e.c_str()));
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    if (!replaced.count(name_of(*e))) envp.push_back(*e);
  }
  for (const auto& e : extra_environment) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!log_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  }
  // Its own process group: a Ctrl-C at the terminal reaches the supervisor only, which then
  // forwards exactly one interrupt to each worker.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);
  pid_t pid = 0;
  const int rc =
      posix_spawn(&pid, arguments[0].c_str(), &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (rc != 0)
    throw UserError(fmt::format("cannot start '{}': {} (is the build complete?)", arguments[0],
                                std::strerror(rc)));
  return pid;
}

}  // namespace

namespace {

// One `lory run` of a grid, in the steps a reader looks for: classify every cell (done, failed,
// trained by a live process elsewhere, or queued), then launch up to `jobs` workers at a time and
// reap each as it ends (recording the ending a worker could not record itself), then summarise.
class GridSupervisor {
 public:
  GridSupervisor(const Experiment& experiment, const SupervisorOptions& options,
                 ResultsStore& store)
      : experiment_(experiment), options_(options), store_(store) {}

  // 1. Registers every cell and decides what each needs.
  void classify() {
    const int64_t experiment_id = store_.upsert_experiment(
        experiment_.name, fs::weakly_canonical(experiment_.file).string(), experiment_.description,
        experiment_.source_text, experiment_.included_files);
    std::map<std::string, std::string> checksum_of_corpus;
    std::vector<std::string> mismatched;
    for (size_t i = 0; i < experiment_.cells.size(); ++i) {
      const ExperimentCell& cell = experiment_.cells[i];
      const std::string corpus = experiment_.corpus_path(cell.config);
      if (!checksum_of_corpus.count(corpus))
        checksum_of_corpus[corpus] = Corpus::checksum_from_manifest(corpus);
      const int64_t seed = cell.config.section("trainer").values.get_int("seed");
      const int64_t run_id = store_.ensure_run(experiment_id, cell.identity, cell.label,
                                               cell.config.canonical_json(), seed);
      const RunRecord run = *store_.find_run(run_id);
      // What the views pair runs by, known from registration on (the worker records it again). A
      // done run keeps what it was trained with, whatever the plugins found now declare.
      if (run.status != run_status::kDone) {
        store_.set_run_attribute(run_id, "router_roles",
                                 fmt::format("{}", fmt::join(cell.router_roles, ",")));
      }
      WorkerLiveness liveness;
      const bool has_results = run.status == run_status::kDone || run.last_step > 0;
      if (has_results && !run.corpus_checksum.empty() &&
          run.corpus_checksum != checksum_of_corpus[corpus]) {
        mismatched.push_back(fmt::format("run {} ({}, {})", run.id, run.label, run.status));
        if (!options_.allow_corpus_change) continue;
      }
      if (run.status == run_status::kDone) {
        ++already_done_;
      } else if ((run.status == run_status::kFailed || run.status == run_status::kDiverged) &&
                 !options_.retry_failed) {
        skipped_failed_.push_back(fmt::format("run {} ({}): {} at step {}: {}", run.id, run.label,
                                              run.status, run.last_step, run.reason));
      } else if (run.status == run_status::kRunning &&
                 (liveness = worker_liveness(
                      run, store_.run_attribute(run.id, "worker_start").value_or("")))
                     .alive) {
        left_to_others_.push_back(
            fmt::format("run {} ({}): being trained by process {} on {}, at step {} of {}", run.id,
                        run.label, run.worker_pid, run.host, run.last_step, run.total_steps));
        std::printf("run %lld (%s) is being trained by process %lld; left to it\n",
                    static_cast<long long>(run.id), run.label.c_str(),
                    static_cast<long long>(run.worker_pid));
      } else {
        if (run.status == run_status::kRunning) {
          std::printf("run %lld (%s) was left running by process %lld: %s; resuming it\n",
                      static_cast<long long>(run.id), run.label.c_str(),
                      static_cast<long long>(run.worker_pid), liveness.why.c_str());
        }
        queue_.push_back({i, run_id});  // new, interrupted, or orphaned by a worker that died
      }
    }
    if (!mismatched.empty() && !options_.allow_corpus_change) {
      throw UserError(
          fmt::format("the corpus of experiment '{}' changed since these runs were trained, so "
                      "their results would not be "
                      "comparable with new ones:\n  {}\nuse another --db, or pass "
                      "--allow-corpus-change to keep them and go on",
                      experiment_.name, fmt::join(mismatched, "\n  ")));
    }
    if (!mismatched.empty()) {
      std::printf(
          "warning: %zu run(s) were trained on another version of the corpus "
          "(--allow-corpus-change)\n",
          mismatched.size());
    }
    for (const auto& line : skipped_failed_)
      std::printf("not retried (pass --retry-failed): %s\n", line.c_str());
    if (options_.shuffle_order) SeededRandom(options_.order_seed).shuffle(queue_);
    const size_t total = experiment_.cells.size();
    std::printf("experiment '%s': %zu cell%s, %zu done before, %zu to train%s\n",
                experiment_.name.c_str(), total, total == 1 ? "" : "s", already_done_,
                queue_.size(),
                options_.jobs > 1 ? fmt::format(", {} at a time", options_.jobs).c_str() : "");
    std::fflush(stdout);
  }

  // For an outside launcher (torchrun, srun): the run exists in the store, and this is the
  // command every rank runs, with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set by it.
  void print_worker_commands() const {
    for (const PendingCell& cell : queue_) {
      std::printf("run %lld (%s): %s\n", static_cast<long long>(cell.run_id),
                  label_of(cell).c_str(),
                  fmt::format("{}", fmt::join(worker_arguments(cell), " ")).c_str());
    }
  }

  // 2. Trains the queue, up to `jobs` workers at a time.
  void train() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;  // no SA_RESTART: waitpid returns on a signal
    // SIGHUP (the terminal closed, an ssh session dropped) is an interruption like Ctrl-C: the
    // workers checkpoint and stop, the runs are marked interrupted, and a rerun resumes them.
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    sigaction(SIGHUP, &action, nullptr);
    interrupts = 0;
    while (next_ < queue_.size() || !running_.empty()) {
      if (interrupts > forwarded_) forward_interrupts();
      std::set<int64_t> running_cells;
      for (const auto& [pid, cell] : running_) running_cells.insert(cell.cell.run_id);
      while (!stop_launching_ && next_ < queue_.size() &&
             static_cast<int>(running_cells.size()) < options_.jobs) {
        const PendingCell cell = queue_[next_++];
        launch(cell);
        running_cells.insert(cell.run_id);
      }
      if (running_.empty()) break;
      int status = 0;
      const pid_t pid = ::waitpid(-1, &status, 0);
      if (pid < 0) {
        if (errno == EINTR) continue;  // a signal: handled at the top of the loop
        throw UserError(fmt::format("waiting for workers failed: {}", std::strerror(errno)));
      }
      reap(pid, status);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
  }

  // 3. What happened, the perplexity table, and an error naming every cell that is not done.
  void summarise() const {
    const size_t never_started = queue_.size() - next_;
    std::printf(
        "\n%zu trained, %zu done before, %zu not done%s%s\n\n", trained_, already_done_,
        not_done_.size() + skipped_failed_.size() + left_to_others_.size(),
        never_started ? fmt::format(", {} not started", never_started).c_str() : "",
        left_to_others_.empty()
            ? ""
            : fmt::format(", {} being trained by another process", left_to_others_.size()).c_str());
    std::set<std::string> current_cells;
    for (const ExperimentCell& cell : experiment_.cells) current_cells.insert(cell.identity);
    std::printf("%s", perplexity_table(options_.db_path, experiment_.name, current_cells).c_str());
    std::vector<std::string> unfinished = not_done_;
    unfinished.insert(unfinished.end(), skipped_failed_.begin(), skipped_failed_.end());
    unfinished.insert(unfinished.end(), left_to_others_.begin(), left_to_others_.end());
    if (!unfinished.empty() || never_started > 0) {
      // Stopped by Ctrl-C, SIGTERM or SIGHUP: interrupted (a rerun resumes); else failed cells.
      const auto not_done = [&](const std::string& message) -> void {
        if (interrupts > 0) throw Interrupted(message);
        throw NotDone(message);
      };
      not_done(fmt::format(
          "{} of {} cells of '{}' are not done:\n  {}\n(`lory status {}` shows them; rerun to "
          "resume interrupted cells, with --retry-failed for failed ones)",
          unfinished.size() + never_started, experiment_.cells.size(), experiment_.name,
          fmt::join(unfinished, "\n  "), experiment_.name));
    }
  }

 private:
  const std::string& label_of(const PendingCell& cell) const {
    return experiment_.cells[cell.index].label;
  }

  // The one worker command line of a cell (printed for outside launchers, spawned here).
  std::vector<std::string> worker_arguments(const PendingCell& cell) const {
    std::vector<std::string> arguments = {
        executable_dir() + "/lory-worker",
        "train",
        "--db",
        options_.db_path,
        "--run-id",
        std::to_string(cell.run_id),
        "--corpus",
        experiment_.corpus_path(experiment_.cells[cell.index].config)};
    for (const auto& p : options_.plugin_path)
      arguments.insert(arguments.end(), {"--plugin-path", p});
    return arguments;
  }

  // Ctrl-C once: workers finish their step, checkpoint and stop; twice: they are killed.
  void forward_interrupts() {
    stop_launching_ = true;
    forwarded_ = interrupts;
    const int signal_number = interrupts == 1 ? SIGINT : SIGKILL;
    std::printf("\n%s: %zu worker(s) %s\n", interrupts == 1 ? "interrupt" : "second interrupt",
                running_.size(),
                interrupts == 1
                    ? "finish their step, checkpoint and stop (Ctrl-C again to stop at once)"
                    : "stopped at once");
    std::fflush(stdout);
    for (const auto& [pid, cell] : running_) {
      // The ranks of a data-parallel cell decide together to stop: tell rank 0's group once.
      if (signal_number == SIGKILL || pid == cell.ranks.front()) ::kill(pid, signal_number);
    }
  }

  // Starts the cell's worker process(es): one per data-parallel rank.
  void launch(const PendingCell& cell) {
    const RunRecord run = *store_.find_run(cell.run_id);
    const std::vector<std::string> arguments = worker_arguments(cell);
    const std::string directory = run_directory(options_.db_path, run);
    std::string log_file;
    if (options_.jobs > 1 || options_.processes_per_cell > 1) fs::create_directories(directory);
    if (options_.jobs > 1) log_file = directory + "/worker.log";
    // Resuming needs the checkpoint the store says exists: without its folder the run starts over,
    // and says so.
    std::error_code checkpoint_error;
    const bool has_checkpoint = fs::exists(fs::path(directory) / "latest.json", checkpoint_error);
    const std::string resume_note =
        run.last_step == 0 ? ""
        : has_checkpoint
            ? fmt::format(": resuming after step {}", run.last_step)
            : fmt::format(
                  ": starting over (it had reached step {}, but its checkpoint folder {} is gone)",
                  run.last_step, directory);
    std::printf("[%zu/%zu] %s (run %lld, cell %s)%s%s%s\n", next_, queue_.size(),
                label_of(cell).c_str(), static_cast<long long>(cell.run_id),
                experiment_.cells[cell.index].identity.substr(0, 12).c_str(), resume_note.c_str(),
                options_.processes_per_cell > 1
                    ? fmt::format(", {} ranks", options_.processes_per_cell).c_str()
                    : "",
                log_file.empty() ? "" : fmt::format(", log {}", log_file).c_str());
    std::fflush(stdout);
    RunningCell launched{cell, {}, {}, "", 0, Clock::now()};
    const int port = free_port();
    for (int rank = 0; rank < options_.processes_per_cell; ++rank) {
      std::vector<std::string> environment;
      if (options_.processes_per_cell > 1) {
        environment = {fmt::format("RANK={}", rank), fmt::format("LOCAL_RANK={}", rank),
                       fmt::format("WORLD_SIZE={}", options_.processes_per_cell),
                       "MASTER_ADDR=127.0.0.1", fmt::format("MASTER_PORT={}", port)};
      }
      // Rank 0 speaks for the cell; the other ranks' output goes to their own logs.
      const std::string rank_log =
          rank == 0 ? log_file : fmt::format("{}/worker-rank{}.log", directory, rank);
      const pid_t pid = spawn_worker(arguments, rank_log, environment);
      launched.ranks.push_back(pid);
      launched.alive.insert(pid);
    }
    for (pid_t pid : launched.ranks) running_[pid] = launched;
  }

  // One process ended. When it was its cell's last, the cell's ending is recorded and reported.
  void reap(pid_t pid, int status) {
    auto it = running_.find(pid);
    if (it == running_.end()) return;
    const std::vector<pid_t> ranks = it->second.ranks;
    const bool failed =
        !(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 130));
    std::string first_failure = it->second.first_failure;
    int first_failure_status = it->second.first_failure_status;
    if (failed && first_failure.empty()) {
      first_failure_status = status;
      first_failure = ranks.size() > 1
                          ? fmt::format("rank {}: {}",
                                        std::find(ranks.begin(), ranks.end(), pid) - ranks.begin(),
                                        describe_ending(status))
                          : describe_ending(status);
      // The other ranks would wait for the dead one until their collectives time out: end them now.
      for (pid_t other : ranks) {
        if (other != pid && running_.count(other)) ::kill(other, SIGKILL);
      }
    }
    for (pid_t other : ranks) {
      if (running_.count(other)) {
        running_[other].alive.erase(pid);
        running_[other].first_failure = first_failure;
        running_[other].first_failure_status = first_failure_status;
      }
    }
    const RunningCell finished = it->second;
    running_.erase(it);
    if (!finished.alive.empty()) return;  // wait for the cell's last rank
    const RunRecord run = record_ending(finished, status);
    report_ending(finished, run);
  }

  // The worker could not record its ending (killed, crashed): record it for it. The cell's first
  // failing rank decides (the supervisor itself kills the others).
  RunRecord record_ending(const RunningCell& finished, int status) {
    RunRecord run = *store_.find_run(finished.cell.run_id);
    const std::string& first_failure = finished.first_failure;
    if (run.status == run_status::kRunning || run.status == run_status::kQueued) {
      const int ending = first_failure.empty() ? status : finished.first_failure_status;
      const std::string how = first_failure.empty() ? describe_ending(status) : first_failure;
      if (interrupts > 0 && WIFSIGNALED(status)) {
        store_.mark_finished(run.id, run_status::kInterrupted,
                             "stopped at once by a second interrupt", run.last_step);
      } else if (killed_from_outside(ending)) {
        store_.mark_finished(run.id, run_status::kInterrupted,
                             how + "; interrupted: a rerun resumes it from its last checkpoint",
                             run.last_step);
      } else {
        store_.mark_finished(run.id, run_status::kFailed, how, run.last_step);
      }
      run = *store_.find_run(run.id);
    } else if (run.status == run_status::kFailed && finished.ranks.size() > 1 &&
               !first_failure.empty() && killed_from_outside(finished.first_failure_status) &&
               interrupts == 0) {
      // A rank killed from outside took the cell down first; the survivors' collectives then
      // failed and rank 0 recorded that as the cell's error. The kill is the cause: interrupted.
      store_.mark_finished(
          run.id, run_status::kInterrupted,
          first_failure + "; interrupted: a rerun resumes it from its last checkpoint",
          run.last_step);
      run = *store_.find_run(run.id);
    }
    return run;
  }

  void report_ending(const RunningCell& finished, const RunRecord& run) {
    const double seconds = std::chrono::duration<double>(Clock::now() - finished.started).count();
    if (run.status == run_status::kDone) {
      ++trained_;
      if (options_.jobs > 1) {
        std::printf("  %s (run %lld): done in %s\n", label_of(finished.cell).c_str(),
                    static_cast<long long>(run.id), format_seconds(seconds).c_str());
      }
      return;
    }
    not_done_.push_back(fmt::format("run {} ({}): {} at step {}{}", run.id, run.label, run.status,
                                    run.last_step, run.reason.empty() ? "" : ": " + run.reason));
    std::fprintf(stderr, "  %s (run %lld): %s at step %lld: %s\n", label_of(finished.cell).c_str(),
                 static_cast<long long>(run.id), run.status.c_str(),
                 static_cast<long long>(run.last_step), run.reason.c_str());
    if (options_.fail_fast && run.status != run_status::kInterrupted && !stop_launching_) {
      stop_launching_ = true;
      std::printf(
          "--fail-fast: stopping the grid; running workers finish their step and checkpoint\n");
      for (const auto& [other, cell] : running_) {
        if (other == cell.ranks.front()) ::kill(other, SIGINT);
      }
      forwarded_ = interrupts = 1;
    }
  }

  const Experiment& experiment_;
  const SupervisorOptions& options_;
  ResultsStore& store_;
  std::vector<PendingCell> queue_;
  std::vector<std::string> skipped_failed_, left_to_others_, not_done_;
  size_t already_done_ = 0, next_ = 0, trained_ = 0;
  std::map<pid_t, RunningCell> running_;
  bool stop_launching_ = false;
  int forwarded_ = 0;
};

}  // namespace

void run_grid(const Experiment& experiment, const SupervisorOptions& options) {
  // Before the store is touched: a second supervisor of this grid would train its queued cells
  // twice. A file that is not ours is refused before the lock's folder is made beside it.
  const ResultsStore::CheckedPath checked = ResultsStore::check(options.db_path);
  std::optional<SupervisorLock> lock;
  if (!options.register_only) lock.emplace(options.db_path, experiment.name + options.lock_suffix);
  ResultsStore store(checked);
  GridSupervisor grid(experiment, options, store);
  grid.classify();
  if (options.register_only) {
    grid.print_worker_commands();
    return;
  }
  grid.train();
  grid.summarise();
}

std::string perplexity_table(const std::string& db_path, const std::string& experiment_name,
                             const std::set<std::string>& only_cells) {
  Database db = open_results_read_only(db_path);
  std::map<int64_t, std::map<std::string, double>> ppl;
  std::map<int64_t, std::pair<std::string, int64_t>> label_step;
  std::set<std::string> domains;
  for (const FinalEval& e : ResultsReader(db).final_evals(experiment_name)) {
    if (!only_cells.empty() && !only_cells.count(e.cell_hash))
      continue;  // a cell no longer in the grid
    label_step[e.run_id] = {e.label, e.step};
    domains.insert(e.domain);
    ppl[e.run_id][e.domain] = e.ppl;
  }
  if (ppl.empty()) return "no evaluations recorded yet\n";
  std::vector<std::string> header = {"run", "label", "step"};
  const std::vector<std::string> ordered = ordered_domains(domains);
  header.insert(header.end(), ordered.begin(), ordered.end());
  TextTable table(header);
  for (const auto& [run, by_domain] : ppl) {
    std::vector<std::string> row = {std::to_string(run), label_step[run].first,
                                    std::to_string(label_step[run].second)};
    for (const auto& d : ordered) {
      auto it = by_domain.find(d);
      row.push_back(it == by_domain.end() ? "-" : fmt::format("{:.2f}", it->second));
    }
    table.add_row(std::move(row));
  }
  return "held-out perplexity per domain (final evaluation):\n" + table.render("  ");
}

}  // namespace lory::cli
