#include "core/tasks/task_file.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/support/diagnostics.h"
#include "lory/core/sha256.h"

namespace lory {

namespace {

using nlohmann::json;

// A UserError that says where and what to fix.
[[noreturn]] void bad_line(const std::string& path, int64_t line, const std::string& what) {
  throw UserError(
      fmt::format("task file '{}', line {}: {} (format: docs/inference.md, \"In-context tasks\")",
                  path, line, what));
}

const std::string& string_field(const json& object, const char* name, const std::string& path,
                                int64_t line) {
  const auto it = object.find(name);
  if (it == object.end()) bad_line(path, line, fmt::format("no \"{}\"", name));
  if (!it->is_string())
    bad_line(path, line, fmt::format("\"{}\" must be a string, not {}", name, it->type_name()));
  return it->get_ref<const std::string&>();
}

TaskExample parse_example(const std::string& text, const std::string& path, int64_t line) {
  json object;
  try {
    object = json::parse(text);
  } catch (const json::parse_error& e) {
    bad_line(path, line, fmt::format("not JSON ({})", e.what()));
  }
  if (!object.is_object()) bad_line(path, line, "each line must be one JSON object");
  for (const auto& item : object.items()) {
    const std::string& key = item.key();
    if (key != "context" && key != "choices" && key != "gold" && key != "few_shot" && key != "id") {
      bad_line(path, line,
               fmt::format("unknown field \"{}\" (context, choices, gold, few_shot, id)", key));
    }
  }
  TaskExample example;
  example.line = line;
  const std::string& context = string_field(object, "context", path, line);
  const auto choices = object.find("choices");
  if (choices == object.end() || !choices->is_array())
    bad_line(path, line, "\"choices\" must be an array of strings");
  if (choices->size() < 2)
    bad_line(path, line, fmt::format("{} choice(s): a task needs at least two", choices->size()));
  for (const auto& choice : *choices) {
    if (!choice.is_string()) bad_line(path, line, "\"choices\" must be an array of strings");
    if (choice.get_ref<const std::string&>().empty())
      bad_line(path, line, "a choice is empty: nothing to score");
    example.choices.push_back(choice.get<std::string>());
  }
  const auto gold = object.find("gold");
  if (gold == object.end() || !gold->is_number_integer())
    bad_line(path, line, "\"gold\" must be an integer (0-based)");
  example.gold = gold->get<int64_t>();
  if (example.gold < 0 || example.gold >= static_cast<int64_t>(example.choices.size())) {
    bad_line(path, line,
             fmt::format("\"gold\" is {}, but the choices are numbered 0 to {}", example.gold,
                         example.choices.size() - 1));
  }
  const auto few_shot = object.find("few_shot");
  if (few_shot != object.end()) {
    if (!few_shot->is_array())
      bad_line(path, line, "\"few_shot\" must be an array of {\"context\", \"answer\"} objects");
    for (const auto& shot : *few_shot) {
      if (!shot.is_object())
        bad_line(path, line, "\"few_shot\" must be an array of {\"context\", \"answer\"} objects");
      for (const auto& item : shot.items()) {
        if (item.key() != "context" && item.key() != "answer") {
          bad_line(path, line,
                   fmt::format("unknown field \"{}\" in a few_shot example (context, answer)",
                               item.key()));
        }
      }
      example.prompt_text += string_field(shot, "context", path, line) +
                             string_field(shot, "answer", path, line) + kFewShotSeparator;
      ++example.few_shot;
    }
  }
  example.prompt_text += context;
  if (example.prompt_text.empty())
    bad_line(path, line, "the context is empty: nothing to condition on");
  return example;
}

}  // namespace

std::string task_name_of(const std::string& path) {
  const std::filesystem::path file(path);
  return file.extension() == ".jsonl" ? file.stem().string() : file.filename().string();
}

TaskFile read_task_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(fmt::format("cannot read task file '{}'", path));
  TaskFile task;
  task.name = task_name_of(path);
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    task.examples.push_back(parse_example(line, path, number));
  }
  if (task.examples.empty()) {
    throw UserError(fmt::format(
        "task file '{}' has no examples: write one JSON object per line (docs/inference.md, "
        "\"In-context tasks\")",
        path));
  }
  task.sha256 = sha256_file_hex(path);
  return task;
}

}  // namespace lory
