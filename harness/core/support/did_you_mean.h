// "did you mean" suggestions for misspelt keys and plugin names.
#pragma once

#include <string>
#include <vector>

namespace lory {

// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions).
size_t edit_distance(const std::string& a, const std::string& b);

// The closest candidate when it is close enough to be a plausible typo, else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// " (did you mean 'x'?)" or "".
std::string did_you_mean_suffix(const std::string& word,
                                const std::vector<std::string>& candidates);

// For a key holding a '.': TOML reads a quoted "router.lory.experts" as one key of that name,
// not as a path, so "unknown key 'router.lory.experts'" would name a valid key. This says so:
// ": a quoted key is one name, not a path; write router.lory.experts without quotes". "" for
// a key without a dot.
std::string quoted_dotted_key_hint(const std::string& key);

}  // namespace lory
