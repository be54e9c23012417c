// An experiment: one TOML file (plus the files it includes) holding a base config and grid axes.
// Loading it reads the file (experiment_file.h), expands the grid into points (grid_expansion.h),
// resolves each point into a cell (cell_resolution.h), and reports every error of the file at once.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/config/config_tree.h"
#include "core/experiment/cell_config.h"
#include "core/plugins/plugin_catalog.h"
#include "core/support/diagnostics.h"

namespace lory {

struct ExperimentCell {
  std::string label;     // from the grid: "lory-8 seed=2"
  std::string identity;  // sha256 of the canonical resolved config
  CellConfig config;
  std::vector<std::string>
      router_roles;  // of its router plugin (lory/core/router_roles.h); not part of the identity
  // Where each table and key of the cell was written ("trainer.batch_size" -> file:line:col of
  // the key, a grid override's own line included), for checks made after resolution.
  std::map<std::string, SourceLocation> written_at;

  // The location of `dotted_key`, else of its nearest enclosing table that was written, else of
  // the experiment file.
  SourceLocation where(const std::string& dotted_key) const;
};

struct Experiment {
  std::string name;
  std::string description;
  std::string file;         // as given on the command line
  std::string directory;    // relative paths in the file are resolved against this folder
  std::string source_text;  // the file's own text, recorded with the experiment
  // Every file it includes, directly or not: (absolute path, text), recorded with the experiment
  // too, so that the store holds every line its cells were resolved from.
  std::vector<std::pair<std::string, std::string>> included_files;
  std::vector<ExperimentCell> cells;
  size_t merged_duplicates = 0;  // grid points that resolved to an identical config

  // Keys whose resolved value differs between the cells that have them (what a dry run shows).
  std::vector<std::string> varying_keys() const;
  // data.corpus resolved against `directory`.
  std::string corpus_path(const CellConfig& config) const;
};

// Validates the tree and expands its grid. Errors of every cell go to `diagnostics`; the returned
// experiment is only meaningful when no error was reported.
Experiment resolve_experiment(const ConfigNode& tree, const std::string& path,
                              const PluginCatalog& catalog, Diagnostics& diagnostics,
                              const std::vector<std::string>& included_files = {});

// read_experiment_tree + resolve_experiment; throws UserError with every diagnostic on failure.
Experiment load_experiment(const std::string& path, const PluginCatalog& catalog);

}  // namespace lory
