// The results store's tables of rows keyed by run, with their columns after run_id: the one list
// that the store's writers, `lory merge` and the clean-up of an interrupted attempt's rows read.
// A column added to one of these tables is added here (and in a migration), nowhere else.
#pragma once

#include <string>
#include <vector>

namespace lory {

struct RunTable {
  const char* name;
  const char* columns;  // after run_id, in the order the writer binds them (from parameter 2)
  bool stepped;         // rows after a checkpoint's step belong to an interrupted attempt
};

const std::vector<RunTable>& run_tables();
const RunTable& run_table(const std::string& name);
// "INSERT OR REPLACE INTO name (run_id, columns) VALUES (?, ...)": a rewritten key replaces its
// row.
std::string insert_or_replace_sql(const RunTable& table);

}  // namespace lory
