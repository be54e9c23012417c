// `lory run EXP.toml`: validate an experiment, expand its grid, and train every cell that is not
// done yet, each in its own lory-worker process; `--dry-run` prints the cells instead.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "commands.h"
#include "core/experiment/cell_resources.h"
#include "core/experiment/experiment.h"
#include "core/experiment/experiment_file.h"
#include "core/plugins/plugin_loader.h"
#include "core/store/results_reader.h"
#include "core/store/results_store.h"
#include "core/support/text_table.h"
#include "lory/core/sha256.h"
#include "slurm_launcher.h"
#include "supervisor.h"

namespace lory::cli {

namespace {

struct RunOptions {
  std::string experiment_file;
  std::string db = ResultsStore::kDefaultPath;
  bool dry_run = false;
  std::vector<std::string> plugin_path;
  int jobs = 1;
  int nproc_per_node = 1;
  bool retry_failed = false, fail_fast = false, allow_corpus_change = false,
       code_version_in_identity = false;
  bool register_only = false;  // run-cell: register the run for an outside launcher, train nothing
  std::string order = "grid";
  uint64_t order_seed = 0;
  std::string launcher = "local";
  SlurmOptions slurm;
  std::string cell;  // run-cell: identity prefix, or index with --cell-index
  int64_t cell_index = -1;
};

// What the database already holds of each cell: its run's status ("new" when it has none).
std::map<std::string, std::string> cell_statuses(const Experiment& experiment,
                                                 const std::string& db_path) {
  std::map<std::string, std::string> statuses;
  try {
    if (check_results_file(db_path) != ResultsFileState::Lory) return statuses;
    Database db = open_results_read_only(db_path);
    for (const RunProgress& run : ResultsReader(db).run_progress(experiment.name))
      statuses[run.cell_hash] = run.status;
  } catch (const std::exception&) {
    // A dry run still prints the cells when the database cannot be read; `lory run` will say why.
  }
  return statuses;
}

void print_dry_run(const Experiment& experiment, const std::string& db_path) {
  const auto varying = experiment.varying_keys();
  const std::map<std::string, std::string> statuses = cell_statuses(experiment, db_path);
  std::vector<std::string> header = {"#", "cell", "label",
                                     "in " + std::filesystem::path(db_path).filename().string()};
  header.insert(header.end(), varying.begin(), varying.end());
  TextTable table(header);
  for (size_t i = 0; i < experiment.cells.size(); ++i) {
    const ExperimentCell& cell = experiment.cells[i];
    const auto flat = cell.config.flatten();
    const auto status = statuses.find(cell.identity);
    std::vector<std::string> row = {std::to_string(i + 1), cell.identity.substr(0, 12), cell.label,
                                    status == statuses.end() ? "new" : status->second};
    for (const auto& key : varying) {
      auto it = flat.find(key);
      row.push_back(it == flat.end() ? "-" : it->second);
    }
    table.add_row(std::move(row));
  }
  std::printf("experiment '%s' (%s): %zu cell%s", experiment.name.c_str(), experiment.file.c_str(),
              experiment.cells.size(), experiment.cells.size() == 1 ? "" : "s");
  if (experiment.merged_duplicates > 0) {
    std::printf(", %zu grid point%s merged into identical cells", experiment.merged_duplicates,
                experiment.merged_duplicates == 1 ? "" : "s");
  }
  std::printf("\n%s", table.render("  ").c_str());
  if (varying.empty()) std::printf("  (all cells share one config)\n");
}

// Validated experiment and the plugin path it was resolved with.
std::pair<Experiment, std::vector<std::string>> load_for_run(const RunOptions& options) {
  Diagnostics diagnostics;
  std::vector<std::string> included_files;
  const ConfigNode tree =
      read_experiment_tree(options.experiment_file, diagnostics, &included_files);
  std::vector<std::string> plugin_path = options.plugin_path;
  for (const auto& p : experiment_plugin_path(tree, options.experiment_file, diagnostics))
    plugin_path.push_back(p);
  const PluginRegistry registry = PluginRegistry::discover_default(plugin_path);
  registry.throw_if_problems(/*skip_unloadable=*/true);
  Experiment experiment;
  if (diagnostics.empty()) {
    experiment =
        resolve_experiment(tree, options.experiment_file, registry, diagnostics, included_files);
  }
  if (!diagnostics.empty()) {
    const std::string report = diagnostics.format();
    const auto count = std::count(report.begin(), report.end(), '\n');
    throw UserError(fmt::format("{} error{} in {}:\n{}", count, count == 1 ? "" : "s",
                                options.experiment_file, report));
  }
  if (!diagnostics.warnings().empty())
    std::fprintf(stderr, "%s", diagnostics.format_warnings().c_str());
  if (options.code_version_in_identity) {
    // Asked for: the same config built by other code is another cell.
    for (ExperimentCell& cell : experiment.cells)
      cell.identity = sha256_hex(cell.identity + current_code_version());
  }
  return {std::move(experiment), std::move(plugin_path)};
}

SupervisorOptions supervisor_options(const RunOptions& options,
                                     const std::vector<std::string>& plugin_path) {
  SupervisorOptions supervisor;
  supervisor.db_path = options.db;
  supervisor.plugin_path = plugin_path;
  supervisor.jobs = options.jobs;
  supervisor.retry_failed = options.retry_failed;
  supervisor.fail_fast = options.fail_fast;
  supervisor.allow_corpus_change = options.allow_corpus_change;
  supervisor.shuffle_order = options.order == "shuffled";
  supervisor.order_seed = options.order_seed;
  supervisor.processes_per_cell = options.nproc_per_node;
  supervisor.register_only = options.register_only;
  return supervisor;
}

// The corpus and memory checks (core/cell_resources.h): errors before a real run registers
// anything; notes after a dry run's table, which also serves to plan a grid whose corpus is not
// prepared yet.
void check_resources(const RunOptions& options, const Experiment& experiment) {
  Diagnostics resources;
  check_cells_can_run(experiment, options.jobs, resources);
  if (resources.empty()) return;
  const std::string report = resources.format();
  const auto count = std::count(report.begin(), report.end(), '\n');
  if (options.dry_run) {
    std::printf("\nnot ready to train (a real run stops here, before registering any cell):\n%s",
                report.c_str());
    return;
  }
  throw UserError(fmt::format("{} error{} in {} (nothing was registered or started):\n{}", count,
                              count == 1 ? "" : "s", options.experiment_file, report));
}

void run_experiment_command(const RunOptions& options) {
  auto [experiment, plugin_path] = load_for_run(options);
  if (options.dry_run) {
    print_dry_run(experiment, options.db);
    check_resources(options, experiment);
    return;
  }
  check_results_file(
      options.db);  // a file that is not a lory database is refused before anything else
  check_resources(options, experiment);
  if (options.launcher == "slurm") {
    SlurmOptions slurm = options.slurm;
    slurm.db_path = options.db;
    slurm.plugin_path = plugin_path;
    slurm.processes_per_cell = options.nproc_per_node;
    launch_on_slurm(experiment, slurm);
    return;
  }
  run_grid(experiment, supervisor_options(options, plugin_path));
}

// One cell of an experiment (what a Slurm array task runs).
void run_cell_command(const RunOptions& options) {
  auto [experiment, plugin_path] = load_for_run(options);
  std::vector<ExperimentCell> chosen;
  for (size_t i = 0; i < experiment.cells.size(); ++i) {
    const ExperimentCell& cell = experiment.cells[i];
    const bool matches = options.cell_index >= 0
                             ? static_cast<int64_t>(i) == options.cell_index
                             : !options.cell.empty() && cell.identity.rfind(options.cell, 0) == 0;
    if (matches) chosen.push_back(cell);
  }
  if (chosen.size() != 1) {
    throw UserError(fmt::format(
        "{} cells of '{}' match {}; give a longer --cell prefix or --cell-index (0..{})",
        chosen.size(), experiment.name,
        options.cell_index >= 0 ? fmt::format("index {}", options.cell_index)
                                : "'" + options.cell + "'",
        experiment.cells.size() - 1));
  }
  experiment.cells = chosen;
  experiment.merged_duplicates = 0;
  check_resources(options, experiment);
  SupervisorOptions supervisor = supervisor_options(options, plugin_path);
  supervisor.lock_suffix = "#" + chosen.front().identity.substr(0, 12);
  run_grid(experiment, supervisor);
}

}  // namespace

void register_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Validate an experiment file and train its cells");
  cmd->add_option("experiment", options->experiment_file, "Experiment TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--db", options->db, "Results database")->capture_default_str();
  cmd->add_flag("--dry-run", options->dry_run,
                "Print the expanded cells (keys that differ) without training");
  cmd->add_option("--plugin-path", options->plugin_path,
                  "Extra plugin folder or file (repeatable)");
  cmd->add_option("--jobs,-j", options->jobs, "Cells trained at once, each in its own worker")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--nproc-per-node", options->nproc_per_node,
                  "Data-parallel ranks per cell on this machine (Gloo process group; "
                  "trainer.batch_size is global)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_flag("--retry-failed", options->retry_failed, "Train failed and diverged cells again");
  cmd->add_flag("--fail-fast", options->fail_fast,
                "Stop the grid at the first failed or diverged cell");
  cmd->add_flag(
      "--allow-corpus-change", options->allow_corpus_change,
      "Go on although runs in the database were trained on another version of the corpus");
  cmd->add_option("--order", options->order,
                  "grid: in grid order; shuffled: seeded random order (early results "
                  "cover the grid)")
      ->check(CLI::IsMember({"grid", "shuffled"}))
      ->capture_default_str();
  cmd->add_option("--order-seed", options->order_seed, "Seed of --order shuffled")
      ->capture_default_str();
  cmd->add_flag("--code-version-in-identity", options->code_version_in_identity,
                "Make the code version part of every cell's identity (by default it is recorded, "
                "not hashed)");
  cmd->add_option("--launcher", options->launcher,
                  "local: train here; slurm: submit a job array (one cell per task)")
      ->check(CLI::IsMember({"local", "slurm"}))
      ->capture_default_str();
  cmd->add_option("--partition", options->slurm.partition, "Slurm partition");
  cmd->add_option("--time", options->slurm.time_limit, "Slurm time limit per cell (e.g. 02:00:00)");
  cmd->add_option("--cpus-per-task", options->slurm.cpus_per_task,
                  "Slurm CPUs per cell (default threads x ranks)");
  cmd->add_flag("--emit-only", options->slurm.emit_only,
                "Write the sbatch scripts without submitting them");
  cmd->callback([options] { run_experiment_command(*options); });

  auto cell_options = std::make_shared<RunOptions>();
  CLI::App* cell_cmd = app.add_subcommand(
      "run-cell", "Train one cell of an experiment (what a Slurm array task runs)");
  cell_cmd->add_option("experiment", cell_options->experiment_file, "Experiment TOML file")
      ->required()
      ->check(CLI::ExistingFile);
  auto* by_hash = cell_cmd->add_option("--cell", cell_options->cell,
                                       "Prefix of the cell's identity (lory run --dry-run)");
  cell_cmd
      ->add_option("--cell-index", cell_options->cell_index,
                   "0-based index of the cell in grid order: the --dry-run table's # minus 1 (a "
                   "Slurm array task id)")
      ->excludes(by_hash);
  cell_cmd->add_option("--db", cell_options->db, "Results database")->capture_default_str();
  cell_cmd->add_option("--plugin-path", cell_options->plugin_path,
                       "Extra plugin folder or file (repeatable)");
  cell_cmd
      ->add_option("--nproc-per-node", cell_options->nproc_per_node,
                   "Data-parallel ranks of the cell")
      ->check(CLI::Range(1, 256));
  cell_cmd->add_flag("--retry-failed", cell_options->retry_failed,
                     "Train the cell again if it failed");
  cell_cmd->add_flag(
      "--register-only", cell_options->register_only,
      "Register the cell's run and print the lory-worker command for an outside launcher "
      "(torchrun, srun) that sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT; train nothing");
  cell_cmd->callback([cell_options] { run_cell_command(*cell_options); });
}

}  // namespace lory::cli
