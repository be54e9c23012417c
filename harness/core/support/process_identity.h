// Which process a process id names, read from /proc/PID/stat. Ids are reused; the pair (boot,
// start time in clock ticks since boot) is not, for as long as the machine runs. Recorded when a
// worker starts training a run, so that a later `lory run` can tell that worker from a newer
// process with the same id, and from a zombie.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace lory {

struct ProcessStat {
  std::string comm;         // the executable's name, as the kernel keeps it
  std::string state;        // "R", "S", ..., "Z" (zombie), "X" (dead)
  std::string start_ticks;  // start time in clock ticks since boot
};

// The fields of /proc/PID/stat that say which process this is; nullopt when it cannot be read
// (no such process, no /proc).
std::optional<ProcessStat> read_process_stat(pid_t pid);

// "<boot id>:<start ticks>" of the process `stat` describes.
std::string process_start_identity(const ProcessStat& stat);
// The same for `pid`; "" when it cannot be read.
std::string process_start_identity(pid_t pid);

}  // namespace lory
