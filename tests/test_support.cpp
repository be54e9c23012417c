#include "test_support.h"

#include <fmt/format.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace lory::testing {

namespace fs = std::filesystem;

std::string test_data_dir() { return LORY_TEST_DATA_DIR; }
std::string build_dir() { return LORY_TEST_BUILD_DIR; }

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "lory-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

CommandResult run_command(const std::string& command_line) {
  const std::string full = command_line + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command_line);
  std::string output;
  std::array<char, 4096> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string prepare_byte_corpus(const TempDir& dir, const std::vector<TestDocument>& documents,
                                const std::string& extra_arguments) {
  std::string jsonl;
  for (const auto& d : documents) {
    jsonl += nlohmann::json{{"id", d.id}, {"domain", d.domain}, {"text", d.text}}.dump() + "\n";
  }
  write_text(dir.file("docs.jsonl"), jsonl);
  const std::string corpus = dir.file("corpus");
  const auto result = run_command(
      fmt::format("{}/lory-data prepare --out {} --jsonl {} --tokenizer byte --force {}",
                  build_dir(), corpus, dir.file("docs.jsonl"), extra_arguments));
  if (result.exit_code != 0) throw std::runtime_error("lory-data prepare failed: " + result.output);
  return corpus;
}

std::string tiny_experiment(const std::string& name, const std::string& trainer,
                            const std::string& eval, const std::string& extra) {
  return fmt::format(R"([experiment]
name = "{}"
[data]
corpus = "corpus"
[model]
context_length = 32
[model.transformer]
d_model = 32
n_layers = 2
n_heads = 2
[trainer]
threads = 1
{}
[eval]
tokens_per_domain = 128
{}
{}
)",
                     name, trainer, eval, extra);
}

std::vector<TestDocument> synthetic_documents(int domains, int per_domain, int min_words,
                                              int max_words) {
  // Each domain has its own small vocabulary, so that domains are distinguishable by content.
  std::vector<TestDocument> out;
  uint64_t state = 12345;
  const auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (int d = 0; d < domains; ++d) {
    const std::string domain = fmt::format("domain{}", d);
    for (int i = 0; i < per_domain; ++i) {
      const int words =
          min_words + static_cast<int>(next() % static_cast<uint64_t>(max_words - min_words + 1));
      std::string text;
      for (int w = 0; w < words; ++w)
        text += fmt::format("{}{}{} ", static_cast<char>('a' + d), next() % 7, w % 3);
      out.push_back({fmt::format("{}/doc{}", domain, i), domain, text});
    }
  }
  return out;
}

}  // namespace lory::testing
