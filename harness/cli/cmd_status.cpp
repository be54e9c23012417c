// `lory status [EXP]`: how far the experiments in a results store are. Without EXP, run counts by
// status per experiment; with EXP (a name or its .toml file), one line per cell with its progress,
// last training loss and an ETA for running cells.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/experiment.h"
#include "core/results_store.h"
#include "core/text_table.h"

namespace lory::cli {

namespace {

struct StatusOptions {
  std::string experiment;
  std::string db = ResultsStore::kDefaultPath;
};

const std::vector<std::string> kStatuses = {"queued", "running", "done", "failed", "diverged", "interrupted"};

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
  Statement s = db.prepare(
      "SELECT x.name, r.status, count(*) FROM experiments x LEFT JOIN runs r ON r.experiment_id = x.id GROUP BY "
      "x.name, r.status ORDER BY x.name");
  std::map<std::string, std::map<std::string, int64_t>> counts;
  while (s.step()) counts[s.column_text(0)][s.column_text(1)] = s.column_int(2);
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
  Statement s = db.prepare(
      "SELECT r.id, r.label, r.status, r.last_step, r.total_steps, r.config, r.reason, "
      "(SELECT value FROM metrics WHERE run_id = r.id AND name = 'train/loss' ORDER BY step DESC LIMIT 1), "
      "(SELECT value FROM metrics WHERE run_id = r.id AND name = 'train/tokens_per_s' ORDER BY step DESC LIMIT 1), "
      "r.cell_hash FROM runs r JOIN experiments x ON x.id = r.experiment_id WHERE x.name = ? ORDER BY r.id");
  s.bind(1, name);
  TextTable table({"run", "cell", "label", "status", "progress", "loss", "tok/s", "ETA", "reason"});
  std::map<std::string, int64_t> counts;
  while (s.step()) {
    const std::string status = s.column_text(2);
    ++counts[status];
    const int64_t step = s.column_int(3), total = s.column_int(4);
    const double tokens_per_s = s.column_double(8);
    std::string eta = "-";
    if (status == "running" && tokens_per_s > 0) {
      const auto config = nlohmann::json::parse(s.column_text(5));
      const double tokens_per_step = config["trainer"]["batch_size"].get<double>() *
                                     config["model"]["context_length"].get<double>();
      const int64_t seconds = static_cast<int64_t>(static_cast<double>(total - step) * tokens_per_step / tokens_per_s);
      eta = seconds >= 60 ? fmt::format("{}m{:02d}s", seconds / 60, seconds % 60) : fmt::format("{}s", seconds);
    }
    std::string reason = s.column_text(6);
    if (reason.size() > 60) reason = reason.substr(0, 57) + "...";
    table.add_row({std::to_string(s.column_int(0)), s.column_text(9).substr(0, 12), s.column_text(1), status,
                   total > 0 ? fmt::format("{}/{}", step, total) : "-",
                   s.column_type(7) == SQLITE_NULL ? "-" : fmt::format("{:.4f}", s.column_double(7)),
                   s.column_type(8) == SQLITE_NULL ? "-" : fmt::format("{:.0f}", tokens_per_s), eta, reason});
  }
  if (table.row_count() == 0) throw UserError(fmt::format("no runs of an experiment named '{}'", name));
  std::string summary;
  for (const auto& status : kStatuses) {
    if (counts.count(status)) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", counts[status], status);
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
  CLI::App* cmd = app.add_subcommand("status", "Counts by status per experiment, or the cells of one experiment");
  cmd->add_option("experiment", options->experiment, "Experiment name or its .toml file");
  cmd->add_option("--db", options->db, "Results database")->capture_default_str();
  cmd->callback([options] { run_status_command(*options); });
}

}  // namespace lory::cli
