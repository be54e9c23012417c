#include "core/support/process_identity.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace lory {

std::optional<ProcessStat> read_process_stat(pid_t pid) {
  std::ifstream stat_file(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!stat_file || !std::getline(stat_file, stat)) return std::nullopt;
  // "pid (comm) state ppid ... starttime(22nd) ...": comm may hold spaces and parentheses.
  const size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  std::istringstream rest(stat.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  if (fields.size() < 20) return std::nullopt;
  return ProcessStat{stat.substr(open + 1, close - open - 1), fields[0], fields[19]};
}

std::string process_start_identity(const ProcessStat& stat) {
  std::ifstream boot_file("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(boot_file, boot);
  return boot + ":" + stat.start_ticks;
}

std::string process_start_identity(pid_t pid) {
  const auto stat = read_process_stat(pid);
  return stat ? process_start_identity(*stat) : "";
}

}  // namespace lory
