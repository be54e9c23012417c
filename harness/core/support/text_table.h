// Aligned plain-text tables for terminal output (query results, dry runs, summaries).
#pragma once

#include <string>
#include <vector>

namespace lory {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : header_(std::move(header)) {}
  void add_row(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns whose cells all look numeric are right-aligned.
  std::string render(const std::string& indent = "") const;
  size_t row_count() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace lory
