// What runs.reason keeps of an exception that ended a run: its message, never LibTorch's C++
// stack trace (a few KB of frames that say nothing to a researcher reading `lory status`), and
// no longer than a status table can show.
#pragma once

#include <exception>
#include <string>

namespace lory {

inline constexpr size_t kMaxFailureReason = 1000;

std::string failure_reason(const std::exception& error);

}  // namespace lory
