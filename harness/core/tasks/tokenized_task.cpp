#include "core/tasks/tokenized_task.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "core/support/diagnostics.h"

namespace lory {

using nlohmann::json;

void write_tokenized_task(std::ostream& out, const TokenizedTask& task) {
  out << json{{"task", task.name},
              {"sha256", task.sha256},
              {"source", task.source},
              {"examples", task.examples.size()}}
             .dump()
      << "\n";
  for (const TokenizedExample& example : task.examples) {
    json choices = json::array();
    for (const TokenizedChoice& choice : example.choices) {
      choices.push_back(
          {{"ids", choice.ids}, {"context", choice.context}, {"bytes", choice.bytes}});
    }
    out << json{{"line", example.line}, {"gold", example.gold}, {"choices", choices}}.dump()
        << "\n";
  }
}

TokenizedTask read_tokenized_task(const std::string& path, int64_t vocab_size) {
  std::ifstream in(path);
  if (!in) throw UserError(fmt::format("cannot read tokenized task '{}'", path));
  TokenizedTask task;
  std::string line;
  try {
    if (!std::getline(in, line)) throw UserError(fmt::format("tokenized task '{}' is empty", path));
    const json header = json::parse(line);
    task.name = header.at("task").get<std::string>();
    task.sha256 = header.at("sha256").get<std::string>();
    task.source = header.at("source").get<std::string>();
    const size_t expected = header.at("examples").get<size_t>();
    while (std::getline(in, line)) {
      const json row = json::parse(line);
      TokenizedExample example;
      example.line = row.at("line").get<int64_t>();
      example.gold = row.at("gold").get<int64_t>();
      for (const json& c : row.at("choices")) {
        TokenizedChoice choice;
        choice.ids = c.at("ids").get<std::vector<int64_t>>();
        choice.context = c.at("context").get<int64_t>();
        choice.bytes = c.at("bytes").get<int64_t>();
        for (const int64_t id : choice.ids) {
          if (id < 0 || id >= vocab_size) {
            throw UserError(fmt::format(
                "tokenized task '{}' has token id {}, outside this corpus's vocabulary ({}): it "
                "was tokenized for another corpus",
                path, id, vocab_size));
          }
        }
        if (choice.context < 1 || choice.context >= static_cast<int64_t>(choice.ids.size())) {
          throw UserError(fmt::format(
              "tokenized task '{}', example of line {}: a choice without context or tokens", path,
              example.line));
        }
        example.choices.push_back(std::move(choice));
      }
      task.examples.push_back(std::move(example));
    }
    if (task.examples.size() != expected) {
      throw UserError(fmt::format("tokenized task '{}' is cut short: {} of {} examples", path,
                                  task.examples.size(), expected));
    }
  } catch (const json::exception& e) {
    throw UserError(
        fmt::format("tokenized task '{}' is not lory-data's format: {}", path, e.what()));
  }
  return task;
}

}  // namespace lory
