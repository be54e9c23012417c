// What a candidate plugin file is, read from its ELF headers before dlopen sees it. dlopen maps
// the segments the program headers describe; a file cut short (a half-finished copy, a full disk)
// maps pages past its end, and touching them raises SIGBUS in the loading process, which would
// take every lory command down with it. So a file whose headers point past its end is refused
// here, by name, and never handed to the dynamic loader.
#pragma once

#include <string>

namespace lory {

// Empty when `path` is a complete shared library for this machine; otherwise what is wrong with
// it, in a sentence that names no path (the caller adds it).
std::string shared_library_problem(const std::string& path);

}  // namespace lory
