// The sections of `lory report`'s document, each from the results store's views: held-out
// perplexity per domain over seeds and against dense; loss curves against tokens and the tokens
// MoE runs need to reach the dense run's final loss; expert x domain heatmaps, specialisation and
// utilisation; load balance during training; throughput; in-context task accuracy. Figures are
// written into `out` (gnuplot).
#pragma once

#include <string>
#include <vector>

#include "cli/report/report_document.h"
#include "core/store/results_reader.h"
#include "core/store/sqlite_db.h"

namespace lory::cli {

// The cells' labels in the order their runs were registered (the grid's order).
std::vector<std::string> group_order(const std::vector<RunCell>& runs);

void add_perplexity_section(ReportDocument& doc, Database& db, const std::string& experiment,
                            const std::vector<std::string>& groups);
// Held-out loss against tokens per cell, the gain over dense against tokens and against the
// number of experts, the similarity-batching gain against tokens (learning_curves.cpp).
void add_learning_curve_sections(ReportDocument& doc, Database& db, const std::string& experiment,
                                 const std::vector<RunCell>& runs,
                                 const std::vector<std::string>& groups, const std::string& out);
void add_loss_section(ReportDocument& doc, Database& db, const std::string& experiment,
                      const std::vector<RunCell>& runs, const std::vector<std::string>& groups,
                      const std::string& out);
void add_routing_sections(ReportDocument& doc, Database& db, const std::vector<RunCell>& runs,
                          const std::string& out);
void add_balance_section(ReportDocument& doc, Database& db, const std::vector<RunCell>& runs);
void add_throughput_section(ReportDocument& doc, Database& db, const std::string& experiment,
                            const std::vector<RunCell>& runs,
                            const std::vector<std::string>& groups);
void add_task_section(ReportDocument& doc, Database& db, const std::string& experiment,
                      const std::vector<std::string>& groups);

}  // namespace lory::cli
