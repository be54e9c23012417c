// Helpers shared by lory's test suites: paths of the build and the test data, temporary folders,
// running lory's programs, and small corpora.
#pragma once

#include <string>
#include <vector>

namespace lory::testing {

// Source folder of tests/data and the build folder (holding lory, lory-data, plugins/).
std::string test_data_dir();
std::string build_dir();

// A fresh folder under the system's temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};
// Runs a shell command line and captures what it prints.
CommandResult run_command(const std::string& command_line);

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

struct TestDocument {
  std::string id, domain, text;
};
// Writes documents as JSONL and prepares a corpus folder with the byte tokenizer via lory-data.
// Returns the corpus folder; throws on failure.
std::string prepare_byte_corpus(const TempDir& dir, const std::vector<TestDocument>& documents,
                                const std::string& extra_arguments = "");

// The text of the tiny experiment the end-to-end tests train: a 2-layer, d_model 32 transformer
// with context 32 on the folder "corpus" next to the experiment file, one thread. `trainer` and
// `eval` are lines added to those tables (steps, batch_size, ...); `extra` is appended at the end
// (router tables, grids).
std::string tiny_experiment(const std::string& name, const std::string& trainer,
                            const std::string& eval = "", const std::string& extra = "");

// Documents of `domains` domains, `per_domain` each, of varied lengths; deterministic.
std::vector<TestDocument> synthetic_documents(int domains, int per_domain, int min_words,
                                              int max_words);

}  // namespace lory::testing
