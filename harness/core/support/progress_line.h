// A progress line for long commands that otherwise print nothing until they end (`lory embed`,
// `lory eval-tasks`): "<what> 1200/11451 (10%), 35 s, ETA 5m10s" on standard error, rewritten in
// place on a terminal, a new line every 10 s otherwise (logs), never more than once a second.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace lory {

class ProgressLine {
 public:
  // `min_interval_s` < 0: 1 s on a terminal, 10 s otherwise.
  ProgressLine(std::string what, int64_t total, double min_interval_s = -1)
      : what_(std::move(what)),
        total_(total),
        terminal_(::isatty(fileno(stderr)) != 0),
        min_interval_s_(min_interval_s >= 0 ? min_interval_s
                        : terminal_         ? 1.0
                                            : 10.0),
        started_(Clock::now()),
        last_(started_) {}

  // `done` of the total are finished.
  void update(int64_t done) {
    const Clock::time_point now = Clock::now();
    const double since_last = std::chrono::duration<double>(now - last_).count();
    if (since_last < min_interval_s_ || done <= 0 || total_ <= 0) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    const double eta = elapsed / static_cast<double>(done) * static_cast<double>(total_ - done);
    std::fprintf(stderr, "%s%s %lld/%lld (%.0f%%), %s, ETA %s%s", terminal_ ? "\r" : "",
                 what_.c_str(), static_cast<long long>(done), static_cast<long long>(total_),
                 100.0 * static_cast<double>(done) / static_cast<double>(total_),
                 duration(elapsed).c_str(), duration(eta).c_str(), terminal_ ? "   " : "\n");
    std::fflush(stderr);
    printed_ = true;
  }

  // Ends the line on a terminal (so that what follows starts on its own line).
  ~ProgressLine() {
    if (printed_ && terminal_) std::fprintf(stderr, "\n");
  }

 private:
  using Clock = std::chrono::steady_clock;

  static std::string duration(double seconds) {
    const auto s = static_cast<long long>(seconds);
    char buffer[32];
    if (s >= 60) {
      std::snprintf(buffer, sizeof buffer, "%lldm%02llds", s / 60, s % 60);
    } else {
      std::snprintf(buffer, sizeof buffer, "%llds", s);
    }
    return buffer;
  }

  std::string what_;
  int64_t total_;
  bool terminal_;
  double min_interval_s_;
  bool printed_ = false;
  Clock::time_point started_, last_;
};

}  // namespace lory
