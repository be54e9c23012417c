// One `lory run` at a time per experiment and database. A second supervisor of the same grid
// would see the first one's queued cells as its own and train them twice; it is refused instead,
// with who holds the grid. The lock is an flock on a file next to the database, so it is released
// by the kernel when its holder exits, however it exits (kill -9 included): a crashed supervisor
// never blocks a rerun.
#pragma once

#include <string>

namespace lory::cli {

class SupervisorLock {
 public:
  // Takes the lock of `scope` (an experiment name, or an experiment's cell) for the database at
  // `db_path`; throws UserError naming the holder (process, host, time, command) when another
  // live process has it.
  SupervisorLock(const std::string& db_path, const std::string& scope);
  ~SupervisorLock();
  SupervisorLock(const SupervisorLock&) = delete;
  SupervisorLock& operator=(const SupervisorLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace lory::cli
