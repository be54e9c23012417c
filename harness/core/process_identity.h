// Which process a process id names. Ids are reused; the pair (boot, start time in clock ticks
// since boot) is not, for as long as the machine runs. Recorded when a worker starts training a
// run, so that a later `lory run` can tell that worker from a newer process with the same id.
#pragma once

#include <sys/types.h>

#include <string>

namespace lory {

// "<boot id>:<start ticks>" of `pid`, read from /proc; "" when it cannot be read (no such
// process, no /proc).
std::string process_start_identity(pid_t pid);

}  // namespace lory
