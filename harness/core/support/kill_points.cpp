#include "core/support/kill_points.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

namespace lory {

namespace {

// A "<name>:<step>" environment variable; {"", -1} when unset or malformed.
std::pair<std::string, int64_t> named_step(const char* variable) {
  const char* value = std::getenv(variable);
  if (!value) return {"", -1};
  const char* colon = std::strchr(value, ':');
  if (!colon) return {"", -1};
  return {std::string(value, colon), std::strtoll(colon + 1, nullptr, 10)};
}

struct Target {
  std::string point;
  int64_t step = -1;
  bool this_rank = true;
};

const Target& target() {
  static const Target t = [] {
    Target parsed;
    std::tie(parsed.point, parsed.step) = named_step("LORY_TEST_KILL_AT");
    if (parsed.step < 0 && parsed.point.empty()) return parsed;
    // LORY_TEST_KILL_RANK limits the kill to one rank of a data-parallel group.
    const char* kill_rank = std::getenv("LORY_TEST_KILL_RANK");
    const char* rank = std::getenv("RANK");
    if (kill_rank) parsed.this_rank = std::string(kill_rank) == (rank ? rank : "0");
    return parsed;
  }();
  return t;
}

}  // namespace

bool fault_injected(const char* fault, int64_t step) {
  static const std::pair<std::string, int64_t> wanted = named_step("LORY_TEST_FAULT");
  return wanted.second == step && wanted.first == fault;
}

void kill_point(const char* point, int64_t step) {
  const Target& t = target();
  if (!(t.this_rank && t.step == step && t.point == point)) return;
  const char* signal_number = std::getenv("LORY_TEST_KILL_SIGNAL");
  const int sent = signal_number ? std::atoi(signal_number) : SIGKILL;
  if (sent != SIGKILL) ::signal(sent, SIG_DFL);  // no handler may turn it into an orderly exit
  kill(getpid(), sent);
}

}  // namespace lory
