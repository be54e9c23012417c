#include "core/support/paths.h"

#include <filesystem>

namespace lory {

std::string resolve_against(const std::string& folder, const std::string& path) {
  if (path.empty()) return path;
  const std::filesystem::path p = path;
  if (p.is_absolute()) return path;
  return (std::filesystem::path(folder) / p).lexically_normal().string();
}

}  // namespace lory
