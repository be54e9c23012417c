#include "worker_liveness.h"

#include "core/support/process_identity.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <optional>

namespace lory::cli {

namespace {

// Seconds since the epoch of an ISO 8601 UTC time as the store writes it ("2026-12-02T14:17:59Z").
std::optional<double> parse_utc(const std::string& text) {
  std::tm tm{};
  if (text.size() < 19 || !strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return std::nullopt;
  return static_cast<double>(timegm(&tm));
}

std::optional<double> boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime" && in >> value) return value;
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

}  // namespace

WorkerLiveness worker_liveness(const RunRecord& run, const std::string& recorded_start) {
  if (run.worker_pid <= 0) return {false, "no worker recorded"};
  if (run.host != current_host())
    return {false, fmt::format("recorded on host '{}', not this one", run.host)};
  const auto stat = read_process_stat(static_cast<pid_t>(run.worker_pid));
  if (!stat) return {false, "no such process"};
  if (stat->state == "Z" || stat->state == "X" || stat->state == "x") {
    return {false, "its process has exited (a zombie)"};
  }
  if (stat->comm.rfind("lory-worker", 0) != 0) {
    return {false, fmt::format("process {} is now '{}'", run.worker_pid, stat->comm)};
  }
  if (!recorded_start.empty()) {
    if (process_start_identity(*stat) == recorded_start) return {true, ""};
    return {false, fmt::format("process {} is a newer lory-worker than the one that trained it",
                               run.worker_pid)};
  }
  const auto boot = boot_time();
  const auto heartbeat = parse_utc(run.heartbeat_at);
  if (boot && heartbeat) {
    const double started =
        *boot + std::stod(stat->start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
    // The store's times have one-second resolution; the worker wrote its first heartbeat after it
    // started, so a process started well after the last heartbeat is another one with the same id.
    if (started > *heartbeat + 2.0)
      return {false, fmt::format("process {} is a newer lory-worker", run.worker_pid)};
  }
  return {true, ""};
}

}  // namespace lory::cli
