#include "core/support/diagnostics.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace lory {

std::string SourceLocation::to_string() const {
  if (!file) return "<unknown>";
  if (line <= 0) return *file;
  return *file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

void Diagnostics::error(const SourceLocation& where, std::string message) {
  errors_.push_back({where, std::move(message)});
}

void Diagnostics::warning(const SourceLocation& where, std::string message) {
  warnings_.push_back({where, std::move(message)});
}

namespace {

std::string format_sorted(const std::vector<Diagnostic>& diagnostics, const char* severity) {
  std::vector<const Diagnostic*> sorted;
  for (const auto& d : diagnostics) sorted.push_back(&d);
  std::stable_sort(sorted.begin(), sorted.end(), [](const Diagnostic* a, const Diagnostic* b) {
    const std::string fa = a->where.file ? *a->where.file : "";
    const std::string fb = b->where.file ? *b->where.file : "";
    return std::tie(fa, a->where.line, a->where.column) <
           std::tie(fb, b->where.line, b->where.column);
  });
  std::set<std::string> seen;
  std::string out;
  for (const Diagnostic* d : sorted) {
    std::string line = d->where.to_string() + ": " + severity + ": " + d->message;
    if (seen.insert(line).second) out += line + "\n";
  }
  return out;
}

}  // namespace

std::string Diagnostics::format() const { return format_sorted(errors_, "error"); }
std::string Diagnostics::format_warnings() const { return format_sorted(warnings_, "warning"); }

}  // namespace lory
