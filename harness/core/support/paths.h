// The one rule for paths written in experiment files: a relative path starts at the folder of the
// file that names it (the experiment file, or the file that includes another), an absolute one
// stays as it is.
#pragma once

#include <string>

namespace lory {

// `path` resolved against `folder` (lexically normalised); "" stays "".
std::string resolve_against(const std::string& folder, const std::string& path);

}  // namespace lory
