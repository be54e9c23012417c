// A report as a list of blocks (headings, text, tables, figures, code), rendered to Markdown and
// to a standalone HTML page from the same content.
#pragma once

#include <string>
#include <vector>

namespace lory::cli {

class ReportDocument {
 public:
  void heading(int level, const std::string& text);
  void paragraph(const std::string& text);
  void table(std::vector<std::string> header, std::vector<std::vector<std::string>> rows);
  void figure(const std::string& file, const std::string& caption);
  void code(const std::string& text);

  std::string markdown() const;
  std::string html(const std::string& title) const;

 private:
  struct Block {
    enum class Kind { Heading, Paragraph, Table, Figure, Code } kind;
    int level = 0;
    std::string text;
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
  };
  std::vector<Block> blocks_;
};

}  // namespace lory::cli
