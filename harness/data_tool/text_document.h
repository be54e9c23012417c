// Raw documents as lory-data reads them, before tokenization.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lory::data {

struct TextDocument {
  std::string id;
  std::string domain;
  std::string text;
  // Documents of one group (the parts of a long text) share their held-out split; default: id.
  std::string group;
};

enum class BadLinePolicy { Stop, Skip };

struct ReadCounts {
  uint64_t bad_lines = 0;      // malformed JSON records skipped (policy Skip)
  uint64_t empty_texts = 0;    // records or files whose text is empty or whitespace: skipped
  uint64_t binary_files = 0;   // folder files holding NUL bytes: skipped
  uint64_t duplicate_ids = 0;  // a document id seen before: skipped
};

struct SourceSummary {
  std::string path;
  std::string kind;    // "jsonl" or "folder"
  std::string domain;  // folders only
  uint64_t documents = 0;
  uint64_t bytes = 0;
};

// Appends the records of a JSONL file (plain or gzip) of {"id", "domain", "text"} objects, with
// an optional "group" (documents of one group are held out together).
// A malformed line throws UserError "file:line: ..." under Stop, and is counted under Skip.
// A line longer than `max_document_bytes` is a problem of that line (refused with what to do, or
// counted under Skip) before it is parsed: memory stays bounded by the limit.
void read_jsonl(const std::string& path, BadLinePolicy policy, std::vector<TextDocument>& out,
                ReadCounts& counts, SourceSummary& summary, uint64_t max_document_bytes);

// Appends every regular file under `directory` (recursively, in sorted path order, symbolic links
// skipped) as a document of `domain` with id "<domain>/<relative path>".
// A file longer than `max_document_bytes` is refused before it is read.
void read_folder(const std::string& directory, const std::string& domain,
                 std::vector<TextDocument>& out, ReadCounts& counts, SourceSummary& summary,
                 uint64_t max_document_bytes);

// What to say about a document over the size limit.
std::string oversized_document_problem(uint64_t bytes, uint64_t max_document_bytes);

}  // namespace lory::data
