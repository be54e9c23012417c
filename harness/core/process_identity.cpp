#include "process_identity.h"

#include <fmt/format.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace lory {

std::string process_start_identity(pid_t pid) {
  std::ifstream stat_file(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!stat_file || !std::getline(stat_file, stat)) return "";
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; starttime is field 22.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream rest(stat.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string field; rest >> field;) fields.push_back(field);
  if (fields.size() < 20) return "";
  std::ifstream boot_file("/proc/sys/kernel/random/boot_id");
  std::string boot;
  std::getline(boot_file, boot);
  return boot + ":" + fields[19];
}

}  // namespace lory
