#include "failure_reason.h"

#include <c10/util/Exception.h>

namespace lory {

std::string failure_reason(const std::exception& error) {
  std::string text = error.what();
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error))
    text = torch_error->what_without_backtrace();
  // Some LibTorch messages carry their trace inline, after this line.
  if (const size_t trace = text.find("Exception raised from"); trace != std::string::npos)
    text.resize(trace);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > kMaxFailureReason) text = text.substr(0, kMaxFailureReason) + " [...]";
  return text;
}

}  // namespace lory
