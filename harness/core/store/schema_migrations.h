// The results store's schema, as the list of migrations that build it: migration i brings a
// database from schema version i to i + 1 (docs/results-schema.md describes the result).
#pragma once

#include <vector>

namespace lory {

// Never edit a released entry: append a new one.
const std::vector<const char*>& results_schema_migrations();

}  // namespace lory
