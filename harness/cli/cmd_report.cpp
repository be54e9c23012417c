// `lory report EXP --out DIR`: the comparison report of an experiment (report.md, report.html and
// PNG figures), its sections (report/report_sections.h) in order, then the SQL to get every number
// again. Every number comes from the results store's views.
#include <fmt/format.h>

#include <optional>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cli/report/report_document.h"
#include "cli/report/report_sections.h"
#include "commands.h"
#include "core/store/results_reader.h"
#include "core/store/results_store.h"

namespace lory::cli {

namespace {

namespace fs = std::filesystem;

struct ReportOptions {
  std::string experiment;
  std::string out;
  std::string db = ResultsStore::kDefaultPath;
};

void run_report(const ReportOptions& options) {
  // A database this user can write is migrated first so that the views exist; one in a read-only
  // folder (a committed study, a shared copy) is read where it is when its schema is current.
  std::optional<ResultsStore> store;
  std::optional<Database> read_only;
  if (results_file_writable(options.db)) {
    store.emplace(options.db, ResultsStore::Open::MustExist);
  } else {
    read_only.emplace(open_results_read_only(options.db));
    if (!results_schema_is_current(*read_only)) {
      throw UserError(fmt::format(
          "'{}' was written by an older lory and must be migrated before it is reported, which "
          "needs write access: copy it to a folder you can write",
          options.db));
    }
  }
  Database& db = store ? store->database() : *read_only;
  std::string experiment = options.experiment;
  if (experiment.size() > 5 && experiment.substr(experiment.size() - 5) == ".toml") {
    if (const auto name =
            ResultsReader(db).experiment_of_file(fs::weakly_canonical(experiment).string())) {
      experiment = *name;
    }
  }
  const std::vector<RunCell> runs = ResultsReader(db).run_cells(experiment);
  if (runs.empty())
    throw UserError(
        fmt::format("no runs of an experiment named '{}' in '{}'", experiment, options.db));
  std::error_code out_error;
  fs::create_directories(options.out, out_error);
  if (out_error) {
    throw UserError(fmt::format("cannot create the report folder '{}': {}; pass another --out",
                                options.out, out_error.message()));
  }
  const std::vector<std::string> groups = group_order(runs);

  ReportDocument doc;
  doc.heading(1, "lory report: " + experiment);
  std::map<std::string, int> statuses;
  for (const RunCell& r : runs) ++statuses[r.status];
  std::string status_text;
  for (const auto& [status, n] : statuses)
    status_text += fmt::format("{}{} {}", status_text.empty() ? "" : ", ", n, status);
  const std::string description = ResultsReader(db).experiment_description(experiment);
  doc.paragraph(fmt::format("{}{} runs ({}) in {}; generated {}.",
                            description.empty() ? "" : description + ". ", runs.size(), status_text,
                            options.db, utc_now_iso8601()));
  add_perplexity_section(doc, db, experiment, groups);
  add_learning_curve_sections(doc, db, experiment, runs, groups, options.out);
  add_loss_section(doc, db, experiment, runs, groups, options.out);
  add_routing_sections(doc, db, runs, options.out);
  add_balance_section(doc, db, runs);
  add_throughput_section(doc, db, experiment, runs, groups);
  add_task_section(doc, db, experiment, groups);
  doc.heading(2, "The same numbers with SQL");
  doc.paragraph(
      "Every table above is a query on the results store's views (docs/results-schema.md); for "
      "example, "
      "with `lory query \"...\" --db " +
      options.db + "`:");
  doc.code(
      fmt::format("SELECT group_label, domain, ppl_mean, ppl_std, n FROM final_evals_over_seeds\n"
                  "  WHERE experiment = '{0}' AND mode = 'default';\n"
                  "SELECT group_label, domain, improvement_mean, improvement_std, n FROM "
                  "moe_vs_dense_over_seeds\n"
                  "  WHERE experiment = '{0}' AND mode = 'default';\n"
                  "SELECT layer, domain, expert, weight_mean FROM expert_domain_matrix WHERE "
                  "run_id = {1} AND mode = 'default';",
                  experiment, runs.back().id));
  std::ofstream(fs::path(options.out) / "report.md") << doc.markdown();
  std::ofstream(fs::path(options.out) / "report.html") << doc.html("lory report: " + experiment);
  std::printf("wrote %s/report.md, report.html and figures\n", options.out.c_str());
}

}  // namespace

void register_report_command(CLI::App& app) {
  auto options = std::make_shared<ReportOptions>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write the comparison report of an experiment (Markdown, HTML, PNG)");
  cmd->add_option("experiment", options->experiment, "Experiment name or its .toml file")
      ->required();
  cmd->add_option("--out", options->out, "Output folder")->required();
  cmd->add_option("--db", options->db, "Results database")->capture_default_str();
  cmd->callback([options] { run_report(*options); });
}

}  // namespace lory::cli
