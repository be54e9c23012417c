// `lory-data`: prepares corpora for lory (tokenizer, token shards, documents index, held-out
// split) and converts between text and token ids. It never links LibTorch (see tokenizer.h).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/diagnostics.h"
#include "core/numeric_options.h"
#include "core/text_table.h"
#include "lory/build_info.h"
#include "lory/corpus.h"
#include "prepare_corpus.h"
#include "task_tokenization.h"

namespace {

using lory::UserError;
using namespace lory::data;

std::string read_input(const std::string& path) {
  std::stringstream buffer;
  if (path.empty() || path == "-") {
    buffer << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(fmt::format("cannot read '{}'", path));
    buffer << in.rdbuf();
  }
  return buffer.str();
}

struct TokenizerChoice {
  std::string corpus;
  std::string model;
  bool byte = false;

  std::unique_ptr<Tokenizer> load() const {
    if (!corpus.empty()) return load_corpus_tokenizer(corpus);
    if (!model.empty()) return load_sentencepiece(model);
    if (byte) return make_byte_tokenizer();
    throw UserError("choose a tokenizer: --corpus DIR, --tokenizer-model FILE or --byte");
  }
  void add_options(CLI::App* cmd) {
    auto* c = cmd->add_option("--corpus", corpus, "Use the tokenizer of this prepared corpus");
    auto* m = cmd->add_option("--tokenizer-model", model, "Use this SentencePiece model")->excludes(c);
    cmd->add_flag("--byte", byte, "Use the byte-level tokenizer")->excludes(c)->excludes(m);
  }
};

std::vector<uint32_t> parse_ids(const std::string& text) {
  std::istringstream in(text);
  std::vector<uint32_t> ids;
  std::string word;
  while (in >> word) {
    try {
      ids.push_back(static_cast<uint32_t>(std::stoul(word)));
    } catch (const std::exception&) {
      throw UserError(fmt::format("'{}' is not a token id", word));
    }
  }
  return ids;
}

// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one.
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  const size_t length = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (length == 0 || i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return length;
}

// A JSON string: quotes, backslashes and control characters escaped, and bytes that are not valid
// UTF-8 (a byte-level token cut out of a multi-byte character) written as U+FFFD.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      out += "\\ufffd";
      ++i;
    } else if (length > 1) {
      out.append(text, i, length);
      i += length;
    } else {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
      } else {
        out += static_cast<char>(c);
      }
      ++i;
    }
  }
  return out + "\"";
}

// A log-prob field as a JSON number, or null when it is missing or not finite.
std::string json_number(const std::string& field) {
  char* end = nullptr;
  const double value = std::strtod(field.c_str(), &end);
  if (field.empty() || end == field.c_str() || !std::isfinite(value)) return "null";
  return fmt::format("{}", value);
}

// A token's text as one table cell: control characters and backslashes written as escapes, so a
// newline or tab token keeps its line and column.
std::string printable_piece(const std::string& piece) {
  std::string out;
  for (const char c : piece) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out;
}

// `decode --score-table`: `lory-worker score`'s "position<TAB>token<TAB>logprob" lines with a
// fourth column, the token's text; the header gains "text", '#' lines pass through.
void decode_score_table(const Tokenizer& tokenizer) {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty() || line[0] == '#') {
      std::printf("%s\n", line.c_str());
    } else if (line.rfind("position\t", 0) == 0) {
      std::printf("%s\ttext\n", line.c_str());
    } else {
      const size_t first = line.find('\t'), second = line.find('\t', first + 1);
      uint32_t id = 0;
      try {
        id = static_cast<uint32_t>(std::stoul(line.substr(first + 1, second - first - 1)));
      } catch (const std::exception&) {
        throw UserError(fmt::format("'{}' is not a line of `lory-worker score`", line));
      }
      std::printf("%s\t%s\n", line.c_str(), printable_piece(tokenizer.decode({id})).c_str());
    }
    std::fflush(stdout);
  }
}

// `decode --stream`: lines of "id" or "id<TAB>log-prob" (what `lory-worker generate` prints) as
// they arrive, continuing `prefix_ids` (the prompt, not printed: decoded together so that the
// continuation's first word keeps its leading space). Text mode writes the text each new token
// adds at once (a token that ends inside a multi-byte character waits for the rest); JSON mode
// writes, at the end, {"text", "tokens": [{"id", "piece", "logprob"}]}.
void decode_stream(const Tokenizer& tokenizer, bool json, std::vector<uint32_t> prefix_ids) {
  std::vector<uint32_t> ids = std::move(prefix_ids);
  const size_t prefix_count = ids.size();
  const std::string prefix_text = tokenizer.decode(ids);
  std::vector<std::string> log_probs;
  std::string printed = prefix_text, line, summary;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {  // the producer's summary: shown on standard error once the text is out
      summary += line + "\n";
      continue;
    }
    const size_t tab = line.find('\t');
    try {
      ids.push_back(static_cast<uint32_t>(std::stoul(line.substr(0, tab))));
    } catch (const std::exception&) {
      throw UserError(fmt::format("'{}' is not a token id", line.substr(0, tab)));
    }
    log_probs.push_back(tab == std::string::npos ? "null" : json_number(line.substr(tab + 1)));
    if (json) continue;
    const std::string text = tokenizer.decode(ids);
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0 &&
        text.find("\xEF\xBF\xBD", printed.size()) == std::string::npos) {  // no U+FFFD: no cut character
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
      std::fflush(stdout);
      printed = text;
    }
  }
  const std::string text = tokenizer.decode(ids);
  if (!json) {
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
    }
    if (ids.size() > prefix_count) std::printf("\n");
    std::fflush(stdout);
    std::fputs(summary.c_str(), stderr);
    return;
  }
  const bool continues = text.compare(0, prefix_text.size(), prefix_text) == 0;
  const std::string continuation =
      continues ? text.substr(prefix_text.size()) : tokenizer.decode({ids.begin() + prefix_count, ids.end()});
  std::string out = "{\"text\": " + json_string(continuation) + ", \"tokens\": [";
  // A token's piece is the text it adds to what comes before it (with its leading space).
  std::string before = prefix_text;
  for (size_t i = prefix_count; i < ids.size(); ++i) {
    const std::string upto = tokenizer.decode({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i + 1)});
    const std::string piece = upto.compare(0, before.size(), before) == 0 ? upto.substr(before.size())
                                                                          : tokenizer.decode({ids[i]});
    before = upto;
    out += fmt::format("{}{{\"id\": {}, \"piece\": {}, \"logprob\": {}}}", i > prefix_count ? ", " : "", ids[i],
                       json_string(piece), log_probs[i - prefix_count]);
  }
  std::printf("%s]}\n", out.c_str());
  std::fflush(stdout);
  std::fputs(summary.c_str(), stderr);
}

void print_info(const std::string& directory) {
  const auto corpus = lory::Corpus::open(directory);  // verifies checksums
  const auto& m = corpus->manifest();
  std::printf("corpus %s: %s tokenizer, vocab %u, eod id %u, %llu documents, %llu tokens (uint%u), checksums ok\n",
              directory.c_str(), m.tokenizer.c_str(), m.vocab_size, m.eod_id,
              static_cast<unsigned long long>(m.total_documents), static_cast<unsigned long long>(m.total_tokens),
              m.token_bytes * 8);
  lory::TextTable table({"domain", "train docs", "train tokens", "heldout docs", "heldout tokens"});
  for (const auto& c : m.domains) {
    table.add_row({c.name, std::to_string(c.train_documents), std::to_string(c.train_tokens),
                   std::to_string(c.heldout_documents), std::to_string(c.heldout_tokens)});
  }
  std::printf("%s", table.render("  ").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lory-data: prepare corpora for lory and convert between text and token ids"};
  app.set_version_flag("--version", std::string("lory-data ") + LORY_VERSION);
  app.require_subcommand(1);

  PrepareOptions prepare;
  std::vector<std::string> folder_specs;
  std::string sources_file;
  std::string bad_lines = "stop";
  double sample_mb = 20;
  CLI::App* prepare_cmd = app.add_subcommand("prepare", "Build a corpus folder from JSONL files and text folders");
  prepare_cmd->add_option("--out", prepare.out, "Output corpus folder")->required();
  prepare_cmd->add_flag("--force", prepare.force,
                       "Replace an existing prepared corpus (a folder with manifest.json); anything else is refused");
  prepare_cmd->add_option("--jsonl", prepare.jsonl_files, "JSONL file of {\"id\",\"domain\",\"text\"} (.gz ok; repeatable)");
  prepare_cmd->add_option("--folder", folder_specs, "DOMAIN=DIR: every file under DIR is a document (repeatable)");
  prepare_cmd->add_option("--sources", sources_file, "TOML file with [[jsonl]] path=... and [[folder]] path=... domain=...");
  prepare_cmd->add_option("--tokenizer", prepare.tokenizer, "sentencepiece or byte")
      ->check(CLI::IsMember({"sentencepiece", "byte"}))
      ->capture_default_str();
  prepare_cmd->add_option("--vocab-size", prepare.training.vocab_size, "SentencePiece vocabulary size")
      ->check(CLI::Range(300u, 1u << 20))
      ->capture_default_str();
  prepare_cmd->add_option("--tokenizer-model", prepare.tokenizer_model, "Reuse this SentencePiece model");
  prepare_cmd->add_option("--tokenizer-sample-mb", sample_mb, "Text the tokenizer is trained on")
      ->check(lory::finite_range(0.001, 1 << 20))
      ->capture_default_str();
  prepare_cmd->add_option("--heldout-fraction", prepare.heldout_fraction, "Held-out fraction per domain")
      ->check(lory::finite_range(0.0, 0.999999))
      ->capture_default_str();
  prepare_cmd->add_option("--min-heldout-docs", prepare.min_heldout_documents, "Minimum held-out documents per domain")
      ->capture_default_str();
  prepare_cmd->add_option("--split-salt", prepare.split_salt, "Salt of the split hash")->capture_default_str();
  prepare_cmd->add_option("--bad-lines", bad_lines, "On a malformed JSON line: stop (report file:line) or skip (count)")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  prepare_cmd->add_option("--max-document-mb", prepare.max_document_mb,
                          "Longest document accepted (a longer one is refused, or skipped with --bad-lines skip)")
      ->check(lory::finite_range(0.001, 1 << 20))
      ->capture_default_str();
  prepare_cmd->add_option("--threads", prepare.threads, "Encoding threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();

  TokenizerChoice encode_choice;
  std::string encode_text;
  CLI::App* encode_cmd = app.add_subcommand("encode", "Text -> token ids (space-separated, one line)");
  encode_choice.add_options(encode_cmd);
  encode_cmd->add_option("--text", encode_text, "Text file (default: standard input)");

  TokenizerChoice decode_choice;
  std::string decode_ids;
  CLI::App* decode_cmd = app.add_subcommand("decode", "Token ids (whitespace-separated) -> text");
  decode_choice.add_options(decode_cmd);
  auto* ids_option = decode_cmd->add_option("--ids", decode_ids, "File of token ids (default: standard input)");
  bool decode_stream_mode = false, decode_json = false;
  std::string decode_prefix_ids;
  decode_cmd->add_option("--prefix-ids", decode_prefix_ids,
                         "With --stream: file of the token ids the stream continues (decoded with it, not printed)");
  decode_cmd
      ->add_flag("--stream", decode_stream_mode,
                 "Read lines of 'id' or 'id<TAB>log-prob' from standard input and write text as they arrive")
      ->excludes(ids_option);
  decode_cmd->add_flag("--json", decode_json, "With --stream: write {text, tokens: [{id, piece, logprob}]} at the end");
  bool decode_score_table_mode = false;
  decode_cmd
      ->add_flag("--score-table", decode_score_table_mode,
                 "Read `lory-worker score` lines (position, token, logprob) from standard input and add each "
                 "token's text")
      ->excludes(ids_option);

  TokenizerChoice tasks_choice;
  std::string tasks_file, tasks_out;
  CLI::App* tasks_cmd = app.add_subcommand(
      "tokenize-tasks", "Check an in-context task file (JSONL) and tokenize it for lory-worker eval-tasks");
  tasks_choice.add_options(tasks_cmd);
  tasks_cmd->add_option("--tasks", tasks_file, "Task file (docs/inference.md, \"In-context tasks\")")->required();
  tasks_cmd->add_option("--out", tasks_out, "Output file (default: standard output)");

  std::string documents_corpus, documents_split = "heldout";
  CLI::App* documents_cmd = app.add_subcommand(
      "documents", "List a corpus's documents of one split: id<TAB>domain<TAB>tokens (scripts/build-tasks uses it)");
  documents_cmd->add_option("corpus", documents_corpus, "Corpus folder")->required();
  documents_cmd->add_option("--split", documents_split, "heldout or train")
      ->check(CLI::IsMember({"heldout", "train"}))
      ->capture_default_str();

  std::string info_corpus;
  CLI::App* info_cmd = app.add_subcommand("info", "Verify a corpus folder and print its counts");
  info_cmd->add_option("corpus", info_corpus, "Corpus folder")->required();

  try {
    app.parse(argc, argv);
    if (*prepare_cmd) {
      if (!sources_file.empty()) read_sources_file(sources_file, prepare);
      for (const auto& spec : folder_specs) {
        const auto eq = spec.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
          throw UserError(fmt::format("--folder '{}' must be DOMAIN=DIR", spec));
        }
        prepare.folders.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
      }
      prepare.bad_lines = bad_lines == "skip" ? BadLinePolicy::Skip : BadLinePolicy::Stop;
      prepare.training.sample_bytes = static_cast<uint64_t>(sample_mb * (1 << 20));
      prepare.training.threads = prepare.threads;
      prepare_corpus(prepare);
    } else if (*encode_cmd) {
      const auto tokenizer = encode_choice.load();
      const auto ids = tokenizer->encode(read_input(encode_text));
      std::string line;
      for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
      std::printf("%s\n", line.c_str());
    } else if (*decode_cmd) {
      const auto tokenizer = decode_choice.load();
      if ((decode_json || !decode_prefix_ids.empty()) && !decode_stream_mode) {
        throw UserError("--json and --prefix-ids go with --stream");
      }
      if (decode_score_table_mode) {
        decode_score_table(*tokenizer);
        return 0;
      }
      if (decode_stream_mode) {
        decode_stream(*tokenizer, decode_json,
                      decode_prefix_ids.empty() ? std::vector<uint32_t>{} : parse_ids(read_input(decode_prefix_ids)));
        return 0;
      }
      const std::vector<uint32_t> ids = parse_ids(read_input(decode_ids));
      const std::string text = tokenizer->decode(ids);
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else if (*tasks_cmd) {
      const auto tokenizer = tasks_choice.load();
      const lory::TokenizedTask tokenized = tokenize_task(lory::read_task_file(tasks_file), *tokenizer, tasks_file);
      if (tasks_out.empty()) {
        std::ostringstream text;
        write_tokenized_task(text, tokenized);
        std::fwrite(text.str().data(), 1, text.str().size(), stdout);
      } else {
        std::ofstream out(tasks_out, std::ios::binary);
        write_tokenized_task(out, tokenized);
        if (!out.flush()) throw UserError(fmt::format("cannot write '{}'", tasks_out));
      }
    } else if (*documents_cmd) {
      const auto corpus = lory::Corpus::open(documents_corpus);
      for (const uint32_t i : corpus->documents_of_split(documents_split == "heldout" ? lory::Split::Heldout
                                                                                      : lory::Split::Train)) {
        const lory::DocumentRecord& record = corpus->document(i);
        std::printf("%s\t%s\t%llu\n", corpus->document_id(i).c_str(), corpus->domain_name(record.domain).c_str(),
                    static_cast<unsigned long long>(record.length));
      }
    } else if (*info_cmd) {
      print_info(info_corpus);
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const UserError& e) {
    std::fprintf(stderr, "lory-data: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lory-data: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
