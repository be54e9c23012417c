#include "data_tool/prepare_corpus.h"

#include <fmt/format.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "core/corpus/corpus_writer.h"
#include "core/store/results_store.h"
#include "core/support/diagnostics.h"
#include "lory/core/corpus.h"
#include "lory/core/sha256.h"

namespace lory::data {

namespace fs = std::filesystem;

double split_hash_fraction(const std::string& salt, const std::string& document_id) {
  Sha256 h;
  h.update(salt);
  h.update("\n");
  h.update(document_id);
  const auto digest = h.digest();
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value = (value << 8) | digest[i];
  return static_cast<double>(value >> 11) * 0x1.0p-53;
}

void read_sources_file(const std::string& path, PrepareOptions& options) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw UserError(fmt::format("{}:{}:{}: {}", path, e.source().begin.line,
                                e.source().begin.column, e.description()));
  }
  const fs::path base = fs::path(path).parent_path();
  const auto resolve = [&](const std::string& p) {
    return fs::path(p).is_absolute() ? p : (base / p).string();
  };
  for (const auto& [key, node] : table) {
    if (key != "jsonl" && key != "folder") {
      throw UserError(
          fmt::format("{}:{}:{}: unknown key '{}' (expected [[jsonl]] or [[folder]] tables)", path,
                      key.source().begin.line, key.source().begin.column, key.str()));
    }
    const toml::array* entries = node.as_array();
    if (!entries)
      throw UserError(
          fmt::format("{}: '{}' must be an array of tables ([[{}]])", path, key.str(), key.str()));
    for (const auto& entry : *entries) {
      const toml::table* t = entry.as_table();
      const auto where =
          fmt::format("{}:{}:{}", path, entry.source().begin.line, entry.source().begin.column);
      if (!t || !(*t)["path"].is_string())
        throw UserError(where + ": each entry needs path = \"...\"");
      const std::string p = resolve(*(*t)["path"].value<std::string>());
      if (key == "jsonl") {
        options.jsonl_files.push_back(p);
      } else {
        if (!(*t)["domain"].is_string())
          throw UserError(where + ": a [[folder]] needs domain = \"...\"");
        options.folders.push_back({*(*t)["domain"].value<std::string>(), p});
      }
    }
  }
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

constexpr size_t kMaxSampleLine = 4096;

// Training text for the tokenizer: the same share of bytes from every domain (so that a large
// domain does not dictate the vocabulary), documents taken in hash order, training split only.
std::vector<std::string> tokenizer_sample(const std::vector<TextDocument>& documents,
                                          const std::vector<uint8_t>& split, uint64_t sample_bytes,
                                          const std::string& salt) {
  std::map<std::string, std::vector<std::pair<double, size_t>>> by_domain;
  for (size_t i = 0; i < documents.size(); ++i) {
    if (split[i] == static_cast<uint8_t>(Split::Train)) {
      by_domain[documents[i].domain].push_back(
          {split_hash_fraction(salt + "/tokenizer", documents[i].id), i});
    }
  }
  std::vector<std::string> lines;
  const uint64_t per_domain = sample_bytes / std::max<size_t>(1, by_domain.size());
  for (auto& [domain, entries] : by_domain) {
    std::sort(entries.begin(), entries.end());
    uint64_t taken = 0;
    for (const auto& [hash, index] : entries) {
      if (taken >= per_domain) break;
      const std::string& text = documents[index].text;
      size_t start = 0;
      while (start < text.size() && taken < per_domain) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        // Lines longer than a SentencePiece sentence (a speech with no line breaks) are cut at
        // spaces, so all of their text can be sampled and only what is kept counts.
        while (end - start > kMaxSampleLine) {
          size_t cut = text.rfind(' ', start + kMaxSampleLine);
          if (cut == std::string::npos || cut <= start) cut = start + kMaxSampleLine;
          lines.emplace_back(text.substr(start, cut - start));
          taken += cut - start;
          start = cut + 1;
          if (taken >= per_domain) break;
        }
        if (taken >= per_domain) break;
        if (end > start) {
          lines.emplace_back(text.substr(start, end - start));
          taken += end - start;
        }
        start = end + 1;
      }
    }
  }
  return lines;
}

// Step 1: every input document, in input order, without duplicate ids.
struct InputDocuments {
  std::vector<TextDocument> documents;
  ReadCounts counts;
  std::vector<SourceSummary> sources;
};

InputDocuments read_input_documents(const PrepareOptions& options) {
  const auto max_document_bytes = static_cast<uint64_t>(options.max_document_mb * (1 << 20));
  InputDocuments input;
  for (const auto& file : options.jsonl_files) {
    SourceSummary summary;
    read_jsonl(file, options.bad_lines, input.documents, input.counts, summary, max_document_bytes);
    input.sources.push_back(summary);
  }
  for (const auto& folder : options.folders) {
    SourceSummary summary;
    read_folder(folder.directory, folder.domain, input.documents, input.counts, summary,
                max_document_bytes);
    input.sources.push_back(summary);
  }
  std::unordered_set<std::string> seen;
  std::vector<TextDocument> unique;
  for (auto& d : input.documents) {
    if (seen.insert(d.id).second) {
      unique.push_back(std::move(d));
    } else {
      ++input.counts.duplicate_ids;
    }
  }
  input.documents = std::move(unique);
  if (input.documents.empty()) throw UserError("the inputs hold no non-empty documents");
  std::printf(
      "read %zu documents (%llu malformed lines skipped, %llu empty, %llu binary, %llu duplicate "
      "ids)\n",
      input.documents.size(), static_cast<unsigned long long>(input.counts.bad_lines),
      static_cast<unsigned long long>(input.counts.empty_texts),
      static_cast<unsigned long long>(input.counts.binary_files),
      static_cast<unsigned long long>(input.counts.duplicate_ids));
  return input;
}

// Step 2: domain ids (sorted by name: ids do not depend on input order) and each document's split.
struct DomainsAndSplit {
  std::vector<std::string> names;
  std::map<std::string, uint16_t> id;
  std::vector<uint8_t> split;  // per document, a Split
};

DomainsAndSplit assign_domains_and_split(const std::vector<TextDocument>& documents,
                                         const PrepareOptions& options) {
  DomainsAndSplit out;
  for (const auto& d : documents) out.names.push_back(d.domain);
  std::sort(out.names.begin(), out.names.end());
  out.names.erase(std::unique(out.names.begin(), out.names.end()), out.names.end());
  if (out.names.size() > 65535) throw UserError("more than 65535 domains");
  for (size_t i = 0; i < out.names.size(); ++i) out.id[out.names[i]] = static_cast<uint16_t>(i);

  out.split.assign(documents.size(), static_cast<uint8_t>(Split::Train));
  std::vector<std::vector<std::pair<double, size_t>>> by_domain(out.names.size());
  for (size_t i = 0; i < documents.size(); ++i) {
    by_domain[out.id[documents[i].domain]].push_back(
        {split_hash_fraction(options.split_salt, documents[i].group), i});
  }
  for (auto& entries : by_domain) {
    std::sort(entries.begin(), entries.end());
    // Documents with the smallest hashes are held out: a fraction, at least the minimum, and
    // always leaving one training document. Parts of one group have one hash, so they sit
    // next to each other here and are held out (or not) together.
    size_t heldout = 0;
    while (heldout < entries.size() && entries[heldout].first < options.heldout_fraction) ++heldout;
    heldout = std::max<size_t>(
        heldout, std::min<uint64_t>(options.min_heldout_documents, entries.size() - 1));
    heldout = std::min(heldout, entries.size() - 1);
    while (heldout > 0 && heldout < entries.size() &&
           entries[heldout].first == entries[heldout - 1].first)
      ++heldout;
    if (heldout == entries.size()) {
      // A domain that is a single group: hold none of it out rather than all of it.
      heldout = 0;
    }
    for (size_t k = 0; k < heldout; ++k)
      out.split[entries[k].second] = static_cast<uint8_t>(Split::Heldout);
  }
  return out;
}

// Step 3: the tokenizer, and the writer of the corpus folder, whose staging folder receives a
// SentencePiece model (trained on a sample of the training split, or reused).
struct CorpusTokenizer {
  std::unique_ptr<CorpusWriter> writer;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string note;  // how it was made, for the manifest
};

CorpusTokenizer make_tokenizer(const PrepareOptions& options,
                               const std::vector<TextDocument>& documents,
                               const std::vector<uint8_t>& split) {
  if (options.tokenizer != "byte" && options.tokenizer != "sentencepiece") {
    throw UserError(
        fmt::format("unknown --tokenizer '{}' (sentencepiece or byte)", options.tokenizer));
  }
  CorpusTokenizer out;
  if (options.tokenizer == "byte") {
    out.writer = std::make_unique<CorpusWriter>(options.out, options.force, 257);
    out.tokenizer = make_byte_tokenizer();
    out.note = "byte-level";
    return out;
  }
  // A reused model decides the vocabulary (and so the token width) itself.
  uint32_t vocab = options.training.vocab_size;
  if (!options.tokenizer_model.empty())
    vocab = load_sentencepiece(options.tokenizer_model)->vocab_size();
  out.writer = std::make_unique<CorpusWriter>(options.out, options.force, vocab);
  const fs::path model_path = fs::path(out.writer->staging_directory()) / "tokenizer.model";
  if (!options.tokenizer_model.empty()) {
    std::error_code ec;
    fs::copy_file(options.tokenizer_model, model_path, ec);
    if (ec)
      throw UserError(fmt::format("cannot copy tokenizer model '{}': {}", options.tokenizer_model,
                                  ec.message()));
    out.note = "reused " + options.tokenizer_model;
  } else {
    const auto t0 = std::chrono::steady_clock::now();
    const auto sample =
        tokenizer_sample(documents, split, options.training.sample_bytes, options.split_salt);
    std::printf("training SentencePiece BPE (vocab %u) on %zu lines...\n",
                options.training.vocab_size, sample.size());
    std::fflush(stdout);
    train_sentencepiece(sample, options.training, model_path.string());
    out.note = fmt::format("trained BPE, vocab {}, {} sample lines, {:.1f} s",
                           options.training.vocab_size, sample.size(), seconds_since(t0));
  }
  out.tokenizer = load_sentencepiece(model_path.string());
  if (out.tokenizer->vocab_size() != vocab) {
    throw UserError(
        fmt::format("SentencePiece produced a vocabulary of {} pieces, not the {} asked for",
                    out.tokenizer->vocab_size(), vocab));
  }
  return out;
}

// Step 4: every document's token ids, encoded in parallel over documents.
std::vector<std::vector<uint32_t>> encode_documents(const Tokenizer& tokenizer,
                                                    const std::vector<TextDocument>& documents,
                                                    int threads) {
  std::vector<std::vector<uint32_t>> encoded(documents.size());
  threads = std::max(1, threads);
  std::vector<std::thread> workers;
  std::vector<std::string> errors(static_cast<size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      try {
        for (size_t i = static_cast<size_t>(t); i < documents.size();
             i += static_cast<size_t>(threads)) {
          encoded[i] = tokenizer.encode(documents[i].text);
        }
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(t)] = e.what();
      }
    });
  }
  for (auto& w : workers) w.join();
  for (const auto& e : errors) {
    if (!e.empty()) throw UserError(e);
  }
  return encoded;
}

// Step 5: the corpus files, with a manifest that says how they were made (counts of what was
// skipped, the split's rule, the sources and their checksums). Returns the text bytes written.
uint64_t write_corpus(CorpusTokenizer& made, const InputDocuments& input,
                      const DomainsAndSplit& domains,
                      const std::vector<std::vector<uint32_t>>& encoded,
                      const PrepareOptions& options, CorpusManifest& manifest) {
  uint64_t text_bytes = 0;
  for (size_t i = 0; i < input.documents.size(); ++i) {
    if (encoded[i].empty()) continue;
    const TextDocument& document = input.documents[i];
    made.writer->add_document(document.id, domains.id.at(document.domain),
                              static_cast<Split>(domains.split[i]), encoded[i].data(),
                              encoded[i].size());
    text_bytes += document.text.size();
  }
  nlohmann::json extra;
  extra["created_at"] = utc_now_iso8601();
  extra["created_by"] = current_code_version();
  extra["tokenizer_note"] = made.note;
  extra["split"] = {{"heldout_fraction", options.heldout_fraction},
                    {"min_heldout_documents", options.min_heldout_documents},
                    {"salt", options.split_salt}};
  extra["skipped"] = {{"malformed_lines", input.counts.bad_lines},
                      {"empty_texts", input.counts.empty_texts},
                      {"binary_files", input.counts.binary_files},
                      {"duplicate_ids", input.counts.duplicate_ids}};
  nlohmann::json source_list = nlohmann::json::array();
  for (const auto& s : input.sources) {
    nlohmann::json entry = {
        {"path", s.path}, {"kind", s.kind}, {"documents", s.documents}, {"bytes", s.bytes}};
    if (!s.domain.empty()) entry["domain"] = s.domain;
    if (s.kind == "jsonl") entry["sha256"] = sha256_file_hex(s.path);
    source_list.push_back(entry);
  }
  extra["sources"] = source_list;
  extra["text_bytes"] = text_bytes;
  manifest = made.writer->finish(made.tokenizer->kind(), made.tokenizer->eod_id(), domains.names,
                                 extra.dump());
  return text_bytes;
}

void print_summary(const PrepareOptions& options, const CorpusManifest& manifest,
                   uint64_t text_bytes, double encode_seconds, double total_seconds) {
  std::printf(
      "wrote %s: %llu documents, %llu tokens (%.2f bytes/token), encoded in %.1f s, %.1f s in "
      "all\n",
      options.out.c_str(), static_cast<unsigned long long>(manifest.total_documents),
      static_cast<unsigned long long>(manifest.total_tokens),
      static_cast<double>(text_bytes) / std::max<uint64_t>(1, manifest.total_tokens),
      encode_seconds, total_seconds);
  std::printf("  %-16s %10s %12s %10s %12s\n", "domain", "train docs", "train tokens", "heldout",
              "heldout tok");
  for (const auto& c : manifest.domains) {
    std::printf("  %-16s %10llu %12llu %10llu %12llu\n", c.name.c_str(),
                static_cast<unsigned long long>(c.train_documents),
                static_cast<unsigned long long>(c.train_tokens),
                static_cast<unsigned long long>(c.heldout_documents),
                static_cast<unsigned long long>(c.heldout_tokens));
  }
}

}  // namespace

void prepare_corpus(const PrepareOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  if (options.out.empty()) throw UserError("--out is required");
  check_corpus_output(options.out, options.force);  // before any input is read
  if (options.jsonl_files.empty() && options.folders.empty()) {
    throw UserError("no input: give --jsonl FILE, --folder DOMAIN=DIR or --sources FILE.toml");
  }
  if (options.heldout_fraction < 0 || options.heldout_fraction >= 1) {
    throw UserError("--heldout-fraction must be in [0, 1)");
  }
  const InputDocuments input = read_input_documents(options);
  const DomainsAndSplit domains = assign_domains_and_split(input.documents, options);
  CorpusTokenizer made = make_tokenizer(options, input.documents, domains.split);
  const auto encode_started = std::chrono::steady_clock::now();
  const auto encoded = encode_documents(*made.tokenizer, input.documents, options.threads);
  const double encode_seconds = seconds_since(encode_started);
  CorpusManifest manifest;
  const uint64_t text_bytes = write_corpus(made, input, domains, encoded, options, manifest);
  print_summary(options, manifest, text_bytes, encode_seconds, seconds_since(started));
}

}  // namespace lory::data
