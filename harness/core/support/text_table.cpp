#include "core/support/text_table.h"

#include <algorithm>
#include <cstdlib>

namespace lory {

namespace {

bool looks_numeric(const std::string& s) {
  if (s.empty()) return true;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

// Display width of UTF-8 text: count the bytes that start a character.
size_t display_width(const std::string& s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

}  // namespace

std::string TextTable::render(const std::string& indent) const {
  const size_t columns = header_.size();
  std::vector<size_t> width(columns);
  std::vector<bool> numeric(columns, true);
  for (size_t c = 0; c < columns; ++c) width[c] = display_width(header_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < columns && c < row.size(); ++c) {
      width[c] = std::max(width[c], display_width(row[c]));
      if (!looks_numeric(row[c])) numeric[c] = false;
    }
  }
  const auto line = [&](const std::vector<std::string>& cells, bool is_header) {
    std::string out = indent;
    for (size_t c = 0; c < columns; ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const std::string pad(width[c] - display_width(cell), ' ');
      const bool right = numeric[c] && !is_header;
      out += right ? pad + cell : cell + (c + 1 < columns ? pad : "");
      if (c + 1 < columns) out += "  ";
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string out = line(header_, true);
  std::vector<std::string> rule;
  for (size_t c = 0; c < columns; ++c) rule.push_back(std::string(width[c], '-'));
  out += line(rule, true);
  for (const auto& row : rows_) out += line(row, false);
  return out;
}

}  // namespace lory
