// Writes a corpus folder in the format of lory/core/corpus.h, streaming: tokens go to disk as
// documents are added (with a running sha256), so corpora larger than memory can be written.
// Everything is built in a staging folder next to the target and renamed into place by finish(), so
// a crash or an error never leaves a half-written corpus under the target name.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "lory/core/corpus.h"

namespace lory {

class Sha256;

// Throws UserError unless `directory` may become the output of a corpus preparation: it does not
// exist, or `force` is set and it is a prepared corpus (a folder with manifest.json) or an empty
// folder. Anything else (a file, a folder of other things) is refused, naming what was found, so
// that --force never deletes what is not a corpus.
void check_corpus_output(const std::string& directory, bool force);

class CorpusWriter {
 public:
  // Refuses an existing `directory` unless `force` (then it is replaced by finish()).
  CorpusWriter(std::string directory, bool force, uint32_t vocab_size);
  ~CorpusWriter();  // removes the staging folder unless finish() ran
  CorpusWriter(const CorpusWriter&) = delete;
  CorpusWriter& operator=(const CorpusWriter&) = delete;

  // Where files that belong to the corpus (tokenizer.model) can be written before finish().
  const std::string& staging_directory() const { return staging_; }

  void add_document(const std::string& id, uint16_t domain, Split split, const uint32_t* tokens,
                    size_t count);

  // Writes documents.bin, document_ids.txt, domains.tsv and manifest.json (the `extra_json`
  // object's keys are added to it) and moves the folder into place.
  CorpusManifest finish(const std::string& tokenizer_kind, uint32_t eod_id,
                        const std::vector<std::string>& domain_names,
                        const std::string& extra_json);

 private:
  std::string directory_, staging_;
  bool force_;
  bool finished_ = false;
  uint32_t vocab_size_, token_bytes_;
  std::ofstream tokens_out_;
  std::unique_ptr<Sha256> tokens_hash_;
  uint64_t total_tokens_ = 0;
  std::vector<DocumentRecord> records_;
  std::string ids_;
};

}  // namespace lory
