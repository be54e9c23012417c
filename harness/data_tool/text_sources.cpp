#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/support/diagnostics.h"
#include "data_tool/text_document.h"

namespace lory::data {

namespace fs = std::filesystem;

namespace {

bool blank(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); });
}

// Reads a whole file, gunzipping it when it is gzip (zlib reads plain files unchanged).
std::string read_maybe_gzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (!file) throw UserError(fmt::format("cannot open '{}'", path));
  std::string content;
  std::vector<char> buffer(1 << 20);
  int n;
  while ((n = gzread(file, buffer.data(), static_cast<unsigned>(buffer.size()))) > 0)
    content.append(buffer.data(), n);
  int error = 0;
  const char* message = gzerror(file, &error);
  const std::string error_text = (n < 0 || (error != Z_OK && error != Z_STREAM_END)) ? message : "";
  gzclose(file);
  if (!error_text.empty())
    throw UserError(fmt::format("'{}' cannot be read: {}", path, error_text));
  return content;
}

}  // namespace

std::string oversized_document_problem(uint64_t bytes, uint64_t max_document_bytes) {
  return fmt::format(
      "a document of {:.1f} MB, over --max-document-mb {:g} (tokenizing one text costs many times "
      "its "
      "size in memory): split it at natural boundaries (chapters, paragraphs) or raise the limit",
      static_cast<double>(bytes) / (1 << 20), static_cast<double>(max_document_bytes) / (1 << 20));
}

void read_jsonl(const std::string& path, BadLinePolicy policy, std::vector<TextDocument>& out,
                ReadCounts& counts, SourceSummary& summary, uint64_t max_document_bytes) {
  const std::string content = read_maybe_gzip(path);
  summary.path = path;
  summary.kind = "jsonl";
  size_t start = 0;
  uint64_t line_number = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == std::string::npos) end = content.size();
    ++line_number;
    const std::string_view line(content.data() + start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    std::string problem;
    TextDocument doc;
    try {
      if (line.size() > max_document_bytes)
        throw std::length_error(oversized_document_problem(line.size(), max_document_bytes));
      const nlohmann::json record = nlohmann::json::parse(line);
      if (!record.is_object()) {
        problem = "not a JSON object";
      } else if (!record.contains("id") || !record.contains("domain") || !record.contains("text")) {
        problem = "missing one of \"id\", \"domain\", \"text\"";
      } else if (!record["domain"].is_string() || !record["text"].is_string() ||
                 !(record["id"].is_string() || record["id"].is_number_integer())) {
        problem = "\"id\" must be a string or integer, \"domain\" and \"text\" strings";
      } else {
        doc.id = record["id"].is_string() ? record["id"].get<std::string>()
                                          : std::to_string(record["id"].get<int64_t>());
        doc.domain = record["domain"].get<std::string>();
        doc.text = record["text"].get<std::string>();
        const bool has_group = record.contains("group");
        doc.group =
            has_group && record["group"].is_string() ? record["group"].get<std::string>() : doc.id;
        if (has_group && !record["group"].is_string()) {
          problem = "\"group\" must be a string";
        } else if (doc.domain.empty() || doc.domain.find_first_of("\t\n") != std::string::npos) {
          problem = "\"domain\" must be a non-empty name without tabs or newlines";
        } else if (doc.id.find('\n') != std::string::npos) {
          problem = "\"id\" must not contain a newline";
        }
      }
    } catch (const nlohmann::json::exception& e) {
      problem = std::string("malformed JSON: ") + e.what();
    } catch (const std::length_error& e) {
      problem = e.what();
    }
    if (!problem.empty()) {
      if (policy == BadLinePolicy::Stop) {
        throw UserError(
            fmt::format("{}:{}: {} (pass --bad-lines skip to skip such lines and count them)", path,
                        line_number, problem));
      }
      ++counts.bad_lines;
      continue;
    }
    if (blank(doc.text)) {
      ++counts.empty_texts;
      continue;
    }
    summary.documents += 1;
    summary.bytes += doc.text.size();
    out.push_back(std::move(doc));
  }
}

void read_folder(const std::string& directory, const std::string& domain,
                 std::vector<TextDocument>& out, ReadCounts& counts, SourceSummary& summary,
                 uint64_t max_document_bytes) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec))
    throw UserError(fmt::format("folder '{}' does not exist", directory));
  summary.path = directory;
  summary.kind = "folder";
  summary.domain = domain;
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(directory, ec)) {
    // Symbolic links are skipped: a linked file would otherwise be read twice under two ids.
    if (!entry.is_symlink() && entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    const uintmax_t bytes = fs::file_size(file, ec);
    if (!ec && bytes > max_document_bytes) {
      throw UserError(fmt::format("{}: {}", file.string(),
                                  oversized_document_problem(bytes, max_document_bytes)));
    }
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    std::string text = buffer.str();
    if (text.find('\0') != std::string::npos) {
      ++counts.binary_files;
      continue;
    }
    if (blank(text)) {
      ++counts.empty_texts;
      continue;
    }
    summary.documents += 1;
    summary.bytes += text.size();
    const std::string id = domain + "/" + file.lexically_relative(directory).generic_string();
    out.push_back({id, domain, std::move(text), id});
  }
}

}  // namespace lory::data
