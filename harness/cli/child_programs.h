// Running lory's other programs (lory-worker, lory-data) from `lory` and waiting for them. A stop
// signal (Ctrl-C, SIGTERM, SIGHUP) that arrives meanwhile is forwarded to the child and, once it
// has ended, thrown as Interrupted, so that the command unwinds and removes its temporary files.
#pragma once

#include <string>
#include <vector>

namespace lory::cli {

// The folder holding lory's executables (lory, lory-worker, lory-data).
std::string executable_dir();

// Starts a program and waits. Returns "" on exit status 0, else how it ended.
std::string run_program(const std::vector<std::string>& arguments);
// Starts a program with its standard output written to `output_file`.
std::string run_program_to_file(const std::vector<std::string>& arguments,
                                const std::string& output_file);

// Starts `producer` with its standard output piped into `consumer`'s standard input and waits for
// both. Returns "" when both exit with status 0, else how the consumer ended if it failed (a
// failing consumer ends the producer with SIGPIPE), else how the producer ended.
std::string run_pipeline(const std::vector<std::string>& producer,
                         const std::vector<std::string>& consumer);

}  // namespace lory::cli
