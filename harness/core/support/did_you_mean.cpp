#include "core/support/did_you_mean.h"

#include <algorithm>
#include <cctype>

namespace lory {

size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = std::tolower(a[i - 1]) == std::tolower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  // A third of the word's length, at least 1 and at most 3 edits: close enough to be a typo,
  // far enough apart that unrelated short keys are not suggested.
  const size_t budget = std::clamp<size_t>(word.size() / 3, 1, 3);
  std::string best;
  size_t best_distance = budget + 1;
  // A word that is the start of a candidate ("warmup" for "warmup_fraction") is a likely slip too.
  if (word.size() >= 4) {
    for (const auto& candidate : candidates) {
      if (candidate.size() > word.size() && candidate.compare(0, word.size(), word) == 0)
        return candidate;
    }
  }
  for (const auto& candidate : candidates) {
    const size_t distance = edit_distance(word, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

std::string did_you_mean_suffix(const std::string& word,
                                const std::vector<std::string>& candidates) {
  const std::string match = closest_match(word, candidates);
  return match.empty() ? "" : " (did you mean '" + match + "'?)";
}

std::string quoted_dotted_key_hint(const std::string& key) {
  if (key.find('.') == std::string::npos) return "";
  return ": a quoted key is one name, not a path; write " + key + " without quotes";
}

}  // namespace lory
