// `lory status [EXP]`: how far the experiments in a results store are. Without EXP, run counts by
// status per experiment; with EXP (a name or its .toml file), one line per cell with its progress,
// last training loss and an ETA for running cells.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/experiment/experiment.h"
#include "core/experiment/experiment_file.h"
#include "core/store/results_reader.h"
#include "core/store/results_store.h"
#include "core/support/text_table.h"
#include "worker_liveness.h"

namespace lory::cli {

namespace {

struct StatusOptions {
  std::string experiment;
  std::string db = ResultsStore::kDefaultPath;
};

const std::vector<std::string> kStatuses = {"queued", "running",  "done",
                                            "failed", "diverged", "interrupted"};

std::string experiment_name(const std::string& name_or_file) {
  if (name_or_file.size() < 5 || name_or_file.substr(name_or_file.size() - 5) != ".toml" ||
      !std::filesystem::exists(name_or_file)) {
    return name_or_file;
  }
  Diagnostics diagnostics;
  const ConfigNode tree = read_experiment_tree(name_or_file, diagnostics);
  const ConfigNode* name = tree.find_path("experiment.name");
  if (!diagnostics.empty() || !name || name->kind() != ConfigNode::Kind::String) {
    throw UserError(fmt::format("cannot read experiment.name from '{}'", name_or_file));
  }
  return name->as_string();
}

void print_overview(Database& db) {
  const auto counts = ResultsReader(db).status_counts();
  std::vector<std::string> header = {"experiment"};
  header.insert(header.end(), kStatuses.begin(), kStatuses.end());
  header.push_back("cells");
  TextTable table(header);
  for (const auto& [name, by_status] : counts) {
    std::vector<std::string> row = {name};
    int64_t cells = 0;
    for (const auto& status : kStatuses) {
      const auto it = by_status.find(status);
      row.push_back(it == by_status.end() ? "0" : std::to_string(it->second));
      if (it != by_status.end()) cells += it->second;
    }
    row.push_back(std::to_string(cells));
    table.add_row(std::move(row));
  }
  std::printf("%s", table.row_count() ? table.render().c_str() : "no experiments yet\n");
}

void print_experiment(Database& db, const std::string& name) {
  TextTable table({"run", "cell", "label", "status", "progress", "loss", "tok/s", "ETA", "reason"});
  std::map<std::string, int64_t> counts;
  for (const RunProgress& run : ResultsReader(db).run_progress(name)) {
    ++counts[run.status];
    const int64_t step = run.last_step, total = run.total_steps;
    const double tokens_per_s = run.last_tokens_per_s.value_or(0.0);
    std::string eta = "-";
    std::string status = run.status;
    std::string reason = run.reason;
    if (run.status == "running") {
      // "running" is what the store says; a worker that died without a word (kill -9 of the whole
      // tree, a reboot) leaves it so. Say so rather than show an ETA.
      RunRecord record;
      record.id = run.id;
      record.worker_pid = run.worker_pid;
      record.host = run.host;
      record.heartbeat_at = run.heartbeat_at;
      const WorkerLiveness liveness = worker_liveness(record, run.worker_start);
      if (!liveness.alive) {
        status = "stale";
        reason = fmt::format("marked running, but its worker is gone ({}): rerun to resume",
                             liveness.why);
      }
    }
    if (status == "running" && tokens_per_s > 0) {
      const auto config = nlohmann::json::parse(run.config_json);
      const double tokens_per_step = config["trainer"]["batch_size"].get<double>() *
                                     config["model"]["context_length"].get<double>();
      const int64_t seconds =
          static_cast<int64_t>(static_cast<double>(total - step) * tokens_per_step / tokens_per_s);
      eta = seconds >= 60 ? fmt::format("{}m{:02d}s", seconds / 60, seconds % 60)
                          : fmt::format("{}s", seconds);
    }
    if (reason.size() > 90) reason = reason.substr(0, 87) + "...";
    table.add_row({std::to_string(run.id), run.cell_hash.substr(0, 12), run.label, status,
                   total > 0 ? fmt::format("{}/{}", step, total) : "-",
                   run.last_loss ? fmt::format("{:.4f}", *run.last_loss) : "-",
                   run.last_tokens_per_s ? fmt::format("{:.0f}", tokens_per_s) : "-", eta, reason});
  }
  if (table.row_count() == 0)
    throw UserError(fmt::format("no runs of an experiment named '{}'", name));
  std::string summary;
  for (const auto& status : kStatuses) {
    if (counts.count(status))
      summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", counts[status], status);
  }
  std::printf("experiment '%s': %s\n%s", name.c_str(), summary.c_str(), table.render("  ").c_str());
}

void run_status_command(const StatusOptions& options) {
  Database db = open_results_read_only(options.db);
  if (options.experiment.empty()) {
    print_overview(db);
  } else {
    print_experiment(db, experiment_name(options.experiment));
  }
}

}  // namespace

void register_status_command(CLI::App& app) {
  auto options = std::make_shared<StatusOptions>();
  CLI::App* cmd = app.add_subcommand(
      "status", "Counts by status per experiment, or the cells of one experiment");
  cmd->add_option("experiment", options->experiment, "Experiment name or its .toml file");
  cmd->add_option("--db", options->db, "Results database")->capture_default_str();
  cmd->callback([options] { run_status_command(*options); });
}

}  // namespace lory::cli
