// `lory-data decode`: token ids to text; as a stream (`lory generate` pipes the worker's tokens
// through it), or adding each token's text to `lory-worker score`'s table.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/support/diagnostics.h"
#include "data_tool/commands.h"
#include "data_tool/tokenizer_choice.h"

namespace lory::data {

namespace {

// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one.
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  const size_t length = c < 0x80           ? 1
                        : (c >> 5) == 0x6  ? 2
                        : (c >> 4) == 0xE  ? 3
                        : (c >> 3) == 0x1E ? 4
                                           : 0;
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
        text.find("\xEF\xBF\xBD", printed.size()) ==
            std::string::npos) {  // no U+FFFD: no cut character
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
  const std::string continuation = continues
                                       ? text.substr(prefix_text.size())
                                       : tokenizer.decode({ids.begin() + prefix_count, ids.end()});
  std::string out = "{\"text\": " + json_string(continuation) + ", \"tokens\": [";
  // A token's piece is the text it adds to what comes before it (with its leading space).
  std::string before = prefix_text;
  for (size_t i = prefix_count; i < ids.size(); ++i) {
    const std::string upto =
        tokenizer.decode({ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(i + 1)});
    const std::string piece = upto.compare(0, before.size(), before) == 0
                                  ? upto.substr(before.size())
                                  : tokenizer.decode({ids[i]});
    before = upto;
    out += fmt::format("{}{{\"id\": {}, \"piece\": {}, \"logprob\": {}}}",
                       i > prefix_count ? ", " : "", ids[i], json_string(piece),
                       log_probs[i - prefix_count]);
  }
  std::printf("%s]}\n", out.c_str());
  std::fflush(stdout);
  std::fputs(summary.c_str(), stderr);
}

struct DecodeOptions {
  TokenizerChoice tokenizer;
  std::string ids_file;
  std::string prefix_ids_file;
  bool stream = false, json = false, score_table = false;
};

void run_decode(const DecodeOptions& options) {
  const auto tokenizer = options.tokenizer.load();
  if ((options.json || !options.prefix_ids_file.empty()) && !options.stream) {
    throw UserError("--json and --prefix-ids go with --stream");
  }
  if (options.score_table) {
    decode_score_table(*tokenizer);
  } else if (options.stream) {
    decode_stream(*tokenizer, options.json,
                  options.prefix_ids_file.empty() ? std::vector<uint32_t>{}
                                                  : parse_ids(read_input(options.prefix_ids_file)));
  } else {
    const std::string text = tokenizer->decode(parse_ids(read_input(options.ids_file)));
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
}

}  // namespace

void add_decode_command(CLI::App& app) {
  auto options = std::make_shared<DecodeOptions>();
  CLI::App* decode_cmd = app.add_subcommand("decode", "Token ids (whitespace-separated) -> text");
  options->tokenizer.add_options(decode_cmd);
  auto* ids_option = decode_cmd->add_option("--ids", options->ids_file,
                                            "File of token ids (default: standard input)");
  decode_cmd->add_option(
      "--prefix-ids", options->prefix_ids_file,
      "With --stream: file of the token ids the stream continues (decoded with it, not printed)");
  decode_cmd
      ->add_flag("--stream", options->stream,
                 "Read lines of 'id' or 'id<TAB>log-prob' from standard input and write text as "
                 "they arrive")
      ->excludes(ids_option);
  decode_cmd->add_flag("--json", options->json,
                       "With --stream: write {text, tokens: [{id, piece, logprob}]} at the end");
  decode_cmd
      ->add_flag("--score-table", options->score_table,
                 "Read `lory-worker score` lines (position, token, logprob) from standard input "
                 "and add each "
                 "token's text")
      ->excludes(ids_option);
  decode_cmd->callback([options] { run_decode(*options); });
}

}  // namespace lory::data
