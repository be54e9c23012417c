#include "report_document.h"

namespace lory::cli {

namespace {

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string escape_cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

}  // namespace

void ReportDocument::heading(int level, const std::string& text) {
  blocks_.push_back({Block::Kind::Heading, level, text, {}, {}});
}
void ReportDocument::paragraph(const std::string& text) {
  blocks_.push_back({Block::Kind::Paragraph, 0, text, {}, {}});
}
void ReportDocument::table(std::vector<std::string> header,
                           std::vector<std::vector<std::string>> rows) {
  blocks_.push_back({Block::Kind::Table, 0, "", std::move(header), std::move(rows)});
}
void ReportDocument::figure(const std::string& file, const std::string& caption) {
  blocks_.push_back({Block::Kind::Figure, 0, caption, {file}, {}});
}
void ReportDocument::code(const std::string& text) {
  blocks_.push_back({Block::Kind::Code, 0, text, {}, {}});
}

std::string ReportDocument::markdown() const {
  std::string out;
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::Heading:
        out += std::string(static_cast<size_t>(b.level), '#') + " " + b.text + "\n\n";
        break;
      case Block::Kind::Paragraph:
        out += b.text + "\n\n";
        break;
      case Block::Kind::Table: {
        std::string line = "|", rule = "|";
        for (const auto& h : b.header) {
          line += " " + escape_cell(h) + " |";
          rule += "---|";
        }
        out += line + "\n" + rule + "\n";
        for (const auto& row : b.rows) {
          line = "|";
          for (const auto& cell : row) line += " " + escape_cell(cell) + " |";
          out += line + "\n";
        }
        out += "\n";
        break;
      }
      case Block::Kind::Figure:
        out += "![" + b.text + "](" + b.header[0] + ")\n\n*" + b.text + "*\n\n";
        break;
      case Block::Kind::Code:
        out += "```sql\n" + b.text + "\n```\n\n";
        break;
    }
  }
  return out;
}

std::string ReportDocument::html(const std::string& title) const {
  std::string out =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + escape_html(title) +
      "</title>\n<style>body{font-family:sans-serif;max-width:1100px;margin:2em "
      "auto;line-height:1.4}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;"
      "text-align:right}th{background:#eee}td:first-child{text-align:left}img{max-width:100%}"
      "pre{background:#f5f5f5;padding:8px;overflow-x:auto}</style></head><body>\n";
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::Heading: {
        const std::string tag = "h" + std::to_string(b.level);
        out += "<" + tag + ">" + escape_html(b.text) + "</" + tag + ">\n";
        break;
      }
      case Block::Kind::Paragraph:
        out += "<p>" + escape_html(b.text) + "</p>\n";
        break;
      case Block::Kind::Table:
        out += "<table><tr>";
        for (const auto& h : b.header) out += "<th>" + escape_html(h) + "</th>";
        out += "</tr>\n";
        for (const auto& row : b.rows) {
          out += "<tr>";
          for (const auto& cell : row) out += "<td>" + escape_html(cell) + "</td>";
          out += "</tr>\n";
        }
        out += "</table>\n";
        break;
      case Block::Kind::Figure:
        out += "<figure><img src=\"" + b.header[0] + "\" alt=\"" + escape_html(b.text) +
               "\"><figcaption>" + escape_html(b.text) + "</figcaption></figure>\n";
        break;
      case Block::Kind::Code:
        out += "<pre>" + escape_html(b.text) + "</pre>\n";
        break;
    }
  }
  return out + "</body></html>\n";
}

}  // namespace lory::cli
