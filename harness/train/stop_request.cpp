#include "stop_request.h"

#include <signal.h>

#include <atomic>

namespace lory {

namespace {

std::atomic<bool> stop{false};

void on_signal(int signal_number) {
  stop.store(true);
  ::signal(signal_number, SIG_DFL);
}

}  // namespace

void install_stop_handlers() {
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  ::signal(SIGHUP, on_signal);  // a closed terminal: checkpoint and stop, as on Ctrl-C
}

bool stop_requested() { return stop.load(); }

}  // namespace lory
