// `lory-data documents`: a corpus's documents of one split, id<TAB>domain<TAB>tokens
// (scripts/build-tasks uses it).
#include <fmt/format.h>

#include <cstdio>

#include "data_tool/commands.h"
#include "lory/core/corpus.h"

namespace lory::data {

void add_documents_command(CLI::App& app) {
  auto corpus_dir = std::make_shared<std::string>();
  auto split = std::make_shared<std::string>("heldout");
  CLI::App* documents_cmd =
      app.add_subcommand("documents",
                         "List a corpus's documents of one split: id<TAB>domain<TAB>tokens "
                         "(scripts/build-tasks uses it)");
  documents_cmd->add_option("corpus", *corpus_dir, "Corpus folder")->required();
  documents_cmd->add_option("--split", *split, "heldout or train")
      ->check(CLI::IsMember({"heldout", "train"}))
      ->capture_default_str();
  documents_cmd->callback([corpus_dir, split] {
    const auto corpus = Corpus::open(*corpus_dir);
    for (const uint32_t i :
         corpus->documents_of_split(*split == "heldout" ? Split::Heldout : Split::Train)) {
      const DocumentRecord& record = corpus->document(i);
      std::printf("%s\t%s\t%llu\n", corpus->document_id(i).c_str(),
                  corpus->domain_name(record.domain).c_str(),
                  static_cast<unsigned long long>(record.length));
    }
  });
}

}  // namespace lory::data
