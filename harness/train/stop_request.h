// A stop asked for from outside (SIGINT/SIGTERM): the trainer finishes the step in progress,
// writes a checkpoint and ends the run as "interrupted". A second signal ends the process at once
// (the handler restores the default action after the first).
#pragma once

namespace lory {

void install_stop_handlers();
bool stop_requested();

}  // namespace lory
