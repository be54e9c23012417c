#include "kill_points.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace lory {

namespace {

struct Target {
  std::string point;
  int64_t step = -1;
};

const Target& target() {
  static const Target t = [] {
    Target parsed;
    const char* value = std::getenv("LORY_TEST_KILL_AT");
    if (!value) return parsed;
    const char* colon = std::strchr(value, ':');
    if (!colon) return parsed;
    parsed.point.assign(value, colon);
    parsed.step = std::strtoll(colon + 1, nullptr, 10);
    return parsed;
  }();
  return t;
}

}  // namespace

void kill_point(const char* point, int64_t step) {
  const Target& t = target();
  if (t.step == step && t.point == point) kill(getpid(), SIGKILL);
}

}  // namespace lory
