// lory-data and the corpus format: round trips, the held-out split, manifests, corruption; the
// random batcher's instances.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/corpus/instance_stream.h"
#include "core/plugins/plugin_loader.h"
#include "lory/core/batcher_api.h"
#include "lory/core/corpus.h"
#include "test_support.h"

namespace lory {
namespace {

namespace fs = std::filesystem;
using testing::build_dir;
using testing::run_command;
using testing::TempDir;

std::string lory_data() { return build_dir() + "/lory-data"; }

TEST(LoryData, EncodeThenDecodeGivesTheTextBackWithEitherTokenizer) {
  TempDir dir;
  const std::string byte_corpus =
      testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 20, 20, 60));
  // SentencePiece on real text: the Python json package and the licences in
  // /usr/share/common-licenses.
  const auto prepared =
      run_command(fmt::format("{} prepare --out {} --folder py=/usr/lib/python3.11/json --folder "
                              "legal=/usr/share/common-licenses "
                              "--vocab-size 400",
                              lory_data(), dir.file("sp")));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  const std::string text = "def f(x):\n    return {\"k\": x}  # tabs\tand  spaces, ünïcödé ✓\n\n";
  testing::write_text(dir.file("in.txt"), text);
  for (const std::string& corpus : {byte_corpus, dir.file("sp")}) {
    const auto encoded =
        run_command(fmt::format("{} encode --corpus {} --text {} > {}", lory_data(), corpus,
                                dir.file("in.txt"), dir.file("ids")));
    ASSERT_EQ(encoded.exit_code, 0) << encoded.output;
    const auto decoded = run_command(
        fmt::format("{} decode --corpus {} --ids {}", lory_data(), corpus, dir.file("ids")));
    ASSERT_EQ(decoded.exit_code, 0) << decoded.output;
    EXPECT_EQ(decoded.output, text) << corpus;
  }
}

std::map<std::string, uint8_t> split_by_id(const Corpus& corpus) {
  std::map<std::string, uint8_t> out;
  for (size_t i = 0; i < corpus.document_count(); ++i)
    out[corpus.document_id(i)] = corpus.document(i).split;
  return out;
}

TEST(LoryData, HeldOutSplitIsDeterministicDisjointAndIndependentOfInputOrder) {
  TempDir a, b;
  auto documents = testing::synthetic_documents(4, 60, 5, 20);
  const auto corpus_a =
      Corpus::open(testing::prepare_byte_corpus(a, documents, "--heldout-fraction 0.1"));
  std::reverse(documents.begin(), documents.end());
  const auto corpus_b =
      Corpus::open(testing::prepare_byte_corpus(b, documents, "--heldout-fraction 0.1"));
  const auto split_a = split_by_id(*corpus_a), split_b = split_by_id(*corpus_b);
  EXPECT_EQ(split_a, split_b);
  EXPECT_EQ(split_a.size(), 240u);  // each id has exactly one split
  for (size_t d = 0; d < corpus_a->domain_count(); ++d) {
    const auto& counts = corpus_a->manifest().domains[d];
    EXPECT_GE(counts.heldout_documents, 2u) << counts.name;
    EXPECT_GT(counts.train_documents, 40u) << counts.name;
  }
  const auto train = corpus_a->documents_of_split(Split::Train);
  const auto heldout = corpus_a->documents_of_split(Split::Heldout);
  std::set<uint32_t> overlap;
  std::set_intersection(train.begin(), train.end(), heldout.begin(), heldout.end(),
                        std::inserter(overlap, overlap.end()));
  EXPECT_TRUE(overlap.empty());
  EXPECT_EQ(train.size() + heldout.size(), corpus_a->document_count());
}

TEST(LoryData, PartsOfOneGroupAreHeldOutTogether) {
  TempDir dir;
  std::string jsonl;
  for (int doc = 0; doc < 40; ++doc) {
    for (int part = 1; part <= 3; ++part) {
      jsonl += nlohmann::json{{"id", fmt::format("book{}/part{}", doc, part)},
                              {"group", fmt::format("book{}", doc)},
                              {"domain", "books"},
                              {"text", fmt::format("text of book {} part {}", doc, part)}}
                   .dump() +
               "\n";
    }
  }
  testing::write_text(dir.file("parts.jsonl"), jsonl);
  const auto prepared = run_command(
      fmt::format("{} prepare --out {} --jsonl {} --tokenizer byte --heldout-fraction 0.2",
                  lory_data(), dir.file("c"), dir.file("parts.jsonl")));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  const auto corpus = Corpus::open(dir.file("c"));
  std::map<std::string, std::set<uint8_t>> splits_of_group;
  for (size_t i = 0; i < corpus->document_count(); ++i) {
    const std::string& id = corpus->document_id(i);
    splits_of_group[id.substr(0, id.find('/'))].insert(corpus->document(i).split);
  }
  size_t heldout_groups = 0;
  for (const auto& [group, splits] : splits_of_group) {
    EXPECT_EQ(splits.size(), 1u) << group << " is split across train and held-out";
    heldout_groups += splits.count(static_cast<uint8_t>(Split::Heldout));
  }
  EXPECT_GT(heldout_groups, 0u);
}

TEST(LoryData, MinimumHeldOutDocumentsPerDomainIsRespected) {
  TempDir dir;
  const auto corpus =
      Corpus::open(testing::prepare_byte_corpus(dir, testing::synthetic_documents(2, 10, 5, 10),
                                                "--heldout-fraction 0 --min-heldout-docs 3"));
  for (const auto& counts : corpus->manifest().domains) EXPECT_EQ(counts.heldout_documents, 3u);
}

TEST(LoryData, ManifestCountsMatchTheFiles) {
  TempDir dir;
  const std::string path =
      testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 30, 10, 40));
  const auto corpus = Corpus::open(path);
  const CorpusManifest& m = corpus->manifest();
  EXPECT_EQ(fs::file_size(path + "/tokens.bin"), m.total_tokens * m.token_bytes);
  EXPECT_EQ(fs::file_size(path + "/documents.bin"), m.total_documents * sizeof(DocumentRecord));
  uint64_t tokens = 0, documents = 0;
  std::vector<uint64_t> per_domain_tokens(m.domains.size());
  for (size_t i = 0; i < corpus->document_count(); ++i) {
    tokens += corpus->document(i).length;
    per_domain_tokens[corpus->document(i).domain] += corpus->document(i).length;
    ++documents;
  }
  EXPECT_EQ(tokens, m.total_tokens);
  EXPECT_EQ(documents, 90u);
  for (size_t d = 0; d < m.domains.size(); ++d) {
    EXPECT_EQ(per_domain_tokens[d], m.domains[d].train_tokens + m.domains[d].heldout_tokens);
    EXPECT_EQ(m.domains[d].train_documents + m.domains[d].heldout_documents, 30u);
  }
  const nlohmann::json manifest =
      nlohmann::json::parse(testing::read_text(path + "/manifest.json"));
  EXPECT_EQ(manifest["sources"][0]["documents"], 90);
}

TEST(LoryData, CorruptedOrTruncatedTokensFileIsDetectedWhenTheCorpusIsOpened) {
  TempDir dir;
  const std::string path =
      testing::prepare_byte_corpus(dir, testing::synthetic_documents(2, 10, 10, 20));
  {
    std::fstream tokens(path + "/tokens.bin", std::ios::in | std::ios::out | std::ios::binary);
    tokens.seekp(100);
    tokens.put('\x7f');
  }
  try {
    Corpus::open(path);
    FAIL() << "a corrupted tokens file was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("tokens.bin does not match its sha256"), std::string::npos)
        << e.what();
  }
  fs::resize_file(path + "/tokens.bin", 64);
  try {
    Corpus::open(path);
    FAIL() << "a truncated tokens file was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(LoryData, MalformedLineStopsWithFileAndLineOrIsSkippedAndCounted) {
  TempDir dir;
  testing::write_text(dir.file("docs.jsonl"),
                      "{\"id\": \"a\", \"domain\": \"x\", \"text\": \"hello\"}\n"
                      "{\"id\": \"b\", \"domain\": \"x\", \"text\": \"   \"}\n"
                      "{\"id\": \"c\", \"domain\": \"x\" \"text\": \"broken\"}\n"
                      "{\"id\": \"d\", \"domain\": \"x\", \"text\": \"world\"}\n");
  const auto stopped =
      run_command(fmt::format("{} prepare --out {} --jsonl {} --tokenizer byte", lory_data(),
                              dir.file("out"), dir.file("docs.jsonl")));
  EXPECT_NE(stopped.exit_code, 0);
  EXPECT_NE(stopped.output.find(dir.file("docs.jsonl") + ":3: malformed JSON"), std::string::npos)
      << stopped.output;
  EXPECT_FALSE(fs::exists(dir.file("out")));
  const auto skipped =
      run_command(fmt::format("{} prepare --out {} --jsonl {} --tokenizer byte --bad-lines skip",
                              lory_data(), dir.file("out"), dir.file("docs.jsonl")));
  ASSERT_EQ(skipped.exit_code, 0) << skipped.output;
  EXPECT_NE(skipped.output.find("read 2 documents (1 malformed lines skipped, 1 empty"),
            std::string::npos)
      << skipped.output;
}

TEST(LoryData, ExistingOutputFolderIsRefusedWithoutForce) {
  TempDir dir;
  const std::string path =
      testing::prepare_byte_corpus(dir, testing::synthetic_documents(1, 5, 5, 10));
  const std::string before = testing::read_text(path + "/manifest.json");
  const auto again = run_command(fmt::format("{} prepare --out {} --jsonl {} --tokenizer byte",
                                             lory_data(), path, dir.file("docs.jsonl")));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.output.find("exists; pass --force"), std::string::npos) << again.output;
  EXPECT_EQ(testing::read_text(path + "/manifest.json"), before);
}

// A document over --max-document-mb is refused at its line before it is parsed (memory stays
// bounded), or skipped and counted with --bad-lines skip.
TEST(LoryData, AnOversizedDocumentIsRefusedAtItsLineOrSkipped) {
  TempDir dir;
  std::string lines;
  for (int i = 0; i < 6; ++i) {
    lines +=
        fmt::format("{{\"id\": \"d{}\", \"domain\": \"a\", \"text\": \"short text {}\"}}\n", i, i);
  }
  lines +=
      "{\"id\": \"big\", \"domain\": \"a\", \"text\": \"" + std::string(1500000, 'x') + "\"}\n";
  testing::write_text(dir.file("docs.jsonl"), lines);
  const std::string prepare =
      fmt::format("{} prepare --jsonl {} --tokenizer byte --max-document-mb 1 --out ", lory_data(),
                  dir.file("docs.jsonl"));
  const auto refused = run_command(prepare + dir.file("refused"));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("docs.jsonl:7: a document of 1.4 MB, over --max-document-mb 1"),
            std::string::npos)
      << refused.output;
  EXPECT_FALSE(std::filesystem::exists(dir.file("refused")));
  const auto skipped = run_command(prepare + dir.file("skipped") + " --bad-lines skip");
  EXPECT_EQ(skipped.exit_code, 0) << skipped.output;
  EXPECT_TRUE(std::filesystem::exists(dir.file("skipped/manifest.json")));
}

// --force replaces a prepared corpus, and nothing else: a folder of other things (or a file) is
// refused with what it holds, and left as it was.
TEST(LoryData, ForceReplacesOnlyAPreparedCorpus) {
  TempDir dir;
  const std::string corpus =
      testing::prepare_byte_corpus(dir, testing::synthetic_documents(1, 5, 5, 10));
  const std::string prepare = fmt::format("{} prepare --jsonl {} --tokenizer byte --force --out ",
                                          lory_data(), dir.file("docs.jsonl"));
  EXPECT_EQ(run_command(prepare + corpus).exit_code, 0);  // a corpus: replaced
  std::filesystem::create_directories(dir.file("project/src"));
  testing::write_text(dir.file("project/src/code.c"), "int main() { return 0; }\n");
  const auto refused = run_command(prepare + dir.file("project"));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(
      refused.output.find("is not a prepared corpus (no manifest.json; it holds 1 entry: 'src')"),
      std::string::npos)
      << refused.output;
  EXPECT_EQ(testing::read_text(dir.file("project/src/code.c")), "int main() { return 0; }\n");
  testing::write_text(dir.file("notes.txt"), "keep me\n");
  const auto file = run_command(prepare + dir.file("notes.txt"));
  EXPECT_NE(file.exit_code, 0);
  EXPECT_NE(file.output.find("is not a folder but a file"), std::string::npos) << file.output;
  EXPECT_EQ(testing::read_text(dir.file("notes.txt")), "keep me\n");
}

// ---- the random batcher, through its real plugin ------------------------------------------------

struct Instances {
  std::vector<std::vector<uint32_t>> tokens, documents;
  std::vector<std::vector<uint16_t>> domains;
};

Instances instances_of(const Corpus& corpus, uint64_t seed, int64_t context_length,
                       bool shuffle_instances = true) {
  const LoadedPlugin plugin = load_plugin_file(build_dir() + "/plugins/lory_batcher_random.so");
  auto batcher = create_plugin_object<BatcherPlugin>(plugin);
  ParamValues params;
  params.set("shuffle_instances", shuffle_instances);
  InstanceStream stream(corpus, batcher->plan({corpus, context_length, seed, ""}, params),
                        context_length);
  Instances out;
  const size_t length = static_cast<size_t>(stream.instance_length());
  for (size_t i = 0; i < stream.instance_count(); ++i) {
    std::vector<uint32_t> tokens(length), documents(length);
    std::vector<uint16_t> domains(length);
    stream.fill(i, tokens.data(), domains.data(), documents.data());
    out.tokens.push_back(tokens);
    out.documents.push_back(documents);
    out.domains.push_back(domains);
  }
  return out;
}

TEST(RandomBatcher, SameSeedGivesTheSameInstancesAndAnotherSeedOthers) {
  TempDir dir;
  const auto corpus =
      Corpus::open(testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 30, 10, 50)));
  const Instances a = instances_of(*corpus, 7, 64), b = instances_of(*corpus, 7, 64),
                  c = instances_of(*corpus, 8, 64);
  EXPECT_GT(a.tokens.size(), 10u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
}

// The share of segments whose main document is not the previous segment's (a router that routes
// from the previous segment routes them mostly from another document), and how many of those
// pairs share a domain (what similarity batching raises), against a count over the instances.
TEST(InstanceStream, CountsTheSegmentsThatFollowASegmentOfAnotherDocument) {
  TempDir dir;
  const auto corpus =
      Corpus::open(testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 30, 10, 50)));
  const LoadedPlugin plugin = load_plugin_file(build_dir() + "/plugins/lory_batcher_random.so");
  auto batcher = create_plugin_object<BatcherPlugin>(plugin);
  const int64_t context = 64;
  ParamValues params;
  params.set("shuffle_instances", true);
  const InstanceStream stream(*corpus, batcher->plan({*corpus, context, 5, ""}, params), context);
  const int64_t used = static_cast<int64_t>(stream.instance_count());
  for (const int64_t segment : {1, 8, 16, 32}) {
    int64_t later = 0, cross = 0, same_domain = 0;
    std::vector<uint32_t> tokens(static_cast<size_t>(stream.instance_length())),
        documents(tokens.size());
    std::vector<uint16_t> domains(tokens.size());
    // The document with most tokens in [begin, end), the earliest on a tie, and its domain.
    const auto main_of = [&](int64_t begin, int64_t end) {
      std::map<uint32_t, int64_t> count;
      for (int64_t t = begin; t < end; ++t) ++count[documents[static_cast<size_t>(t)]];
      int64_t best = begin;
      for (int64_t t = begin; t < end; ++t) {
        if (count[documents[static_cast<size_t>(t)]] >
            count[documents[static_cast<size_t>(best)]]) {
          best = t;
        }
      }
      return std::make_pair(documents[static_cast<size_t>(best)],
                            domains[static_cast<size_t>(best)]);
    };
    for (int64_t i = 0; i < used; ++i) {
      stream.fill(static_cast<size_t>(i), tokens.data(), domains.data(), documents.data());
      for (int64_t k = 1; k * segment < context; ++k) {
        const auto before = main_of((k - 1) * segment, k * segment);
        const auto now = main_of(k * segment, std::min((k + 1) * segment, context));
        ++later;
        if (now.first != before.first) {
          ++cross;
          same_domain += now.second == before.second;
        }
      }
    }
    const InstanceStream::Coverage coverage = stream.coverage(used, 4, segment);
    const double fraction = coverage.cross_document_segments;
    EXPECT_DOUBLE_EQ(fraction, static_cast<double>(cross) / static_cast<double>(later)) << segment;
    EXPECT_DOUBLE_EQ(coverage.cross_document_same_domain,
                     static_cast<double>(same_domain) / static_cast<double>(cross))
        << segment;
    // Documents of 10-50 bytes in 64-token instances: some segments start in a new document.
    EXPECT_GT(fraction, 0.0) << segment;
    EXPECT_LT(fraction, 1.0) << segment;
  }
  EXPECT_EQ(stream.coverage(used, 4).cross_document_segments, -1);     // not asked for
  EXPECT_EQ(stream.coverage(used, 4, 64).cross_document_segments, 0);  // one segment only
}

TEST(RandomBatcher, EachTrainingTokenIsUsedAtMostOncePerEpochAndDomainsLineUp) {
  TempDir dir;
  const auto corpus =
      Corpus::open(testing::prepare_byte_corpus(dir, testing::synthetic_documents(3, 30, 10, 50)));
  // In stream order (instances not shuffled), so that every document's tokens come in order.
  const Instances instances = instances_of(*corpus, 3, 50, /*shuffle_instances=*/false);
  const uint32_t eod = corpus->manifest().eod_id;
  // Walk every instance token and match it to its place in its document: (doc, offset) pairs.
  std::set<std::pair<uint32_t, uint32_t>> used;
  std::map<uint32_t, uint32_t> next_offset;
  size_t eod_tokens = 0;
  for (size_t i = 0; i < instances.tokens.size(); ++i) {
    for (size_t t = 0; t < instances.tokens[i].size(); ++t) {
      const uint32_t doc = instances.documents[i][t];
      const DocumentRecord& record = corpus->document(doc);
      EXPECT_EQ(record.split, static_cast<uint8_t>(Split::Train));
      EXPECT_EQ(instances.domains[i][t], record.domain);
      uint32_t& offset = next_offset[doc];
      if (offset == record.length) {
        EXPECT_EQ(instances.tokens[i][t], eod);
        ++eod_tokens;
        ++offset;
        continue;
      }
      ASSERT_LT(offset, record.length)
          << "document " << doc << " continues after its end-of-document token";
      EXPECT_EQ(instances.tokens[i][t], corpus->token(record.offset + offset));
      EXPECT_TRUE(used.insert({doc, offset}).second) << "token used twice";
      ++offset;
    }
  }
  uint64_t train_tokens = 0;
  for (const auto& d : corpus->manifest().domains) train_tokens += d.train_tokens;
  // Only the tail that does not fill a last instance is left out.
  EXPECT_GT(used.size() + eod_tokens + 51,
            train_tokens + corpus->documents_of_split(Split::Train).size());
  // Shuffling the instances changes their order, not the set of instances.
  Instances shuffled = instances_of(*corpus, 3, 50, /*shuffle_instances=*/true);
  EXPECT_NE(shuffled.tokens, instances.tokens);
  auto sorted = instances.tokens;
  std::sort(sorted.begin(), sorted.end());
  std::sort(shuffled.tokens.begin(), shuffled.tokens.end());
  EXPECT_EQ(shuffled.tokens, sorted);
}

}  // namespace
}  // namespace lory
