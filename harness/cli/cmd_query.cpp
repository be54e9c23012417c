// `lory query "SQL"`: read-only SQL over the results store, printed as a table, CSV or JSON.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/store/results_store.h"
#include "core/store/sqlite_db.h"
#include "core/support/text_table.h"

namespace lory::cli {

namespace {

struct QueryOptions {
  std::string sql;
  std::string db = ResultsStore::kDefaultPath;
  bool csv = false;
  bool json = false;
};

std::string cell_text(const Statement& s, int i) {
  switch (s.column_type(i)) {
    case SQLITE_NULL:
      return "";
    case SQLITE_INTEGER:
      return std::to_string(s.column_int(i));
    case SQLITE_FLOAT:
      return fmt::format("{:.6g}", s.column_double(i));
    case SQLITE_BLOB:
      return "<blob>";
    default:
      return s.column_text(i);
  }
}

std::string csv_escape(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

bool only_whitespace_or_semicolons(const std::string& s) {
  return s.find_first_not_of(" \t\r\n;") == std::string::npos;
}

void run_query(const QueryOptions& options) {
  Database db = open_results_read_only(options.db);
  Statement statement = db.prepare(options.sql);
  if (!only_whitespace_or_semicolons(statement.tail())) {
    throw UserError("lory query runs one statement at a time; split the SQL into separate calls");
  }
  if (!statement.is_readonly()) {
    throw UserError(fmt::format(
        "lory query is read-only and this statement would modify '{}'; nothing was changed",
        options.db));
  }
  const int columns = statement.column_count();
  std::vector<std::string> header;
  for (int i = 0; i < columns; ++i) header.push_back(statement.column_name(i));
  if (options.json) {
    nlohmann::json rows = nlohmann::json::array();
    while (statement.step()) {
      nlohmann::json row = nlohmann::json::object();
      for (int i = 0; i < columns; ++i) {
        switch (statement.column_type(i)) {
          case SQLITE_NULL:
            row[header[i]] = nullptr;
            break;
          case SQLITE_INTEGER:
            row[header[i]] = statement.column_int(i);
            break;
          case SQLITE_FLOAT:
            row[header[i]] = statement.column_double(i);
            break;
          default:
            row[header[i]] = statement.column_text(i);
        }
      }
      rows.push_back(row);
    }
    std::printf("%s\n", rows.dump(2).c_str());
  } else if (options.csv) {
    std::string line;
    for (int i = 0; i < columns; ++i) line += (i ? "," : "") + csv_escape(header[i]);
    std::printf("%s\n", line.c_str());
    while (statement.step()) {
      line.clear();
      for (int i = 0; i < columns; ++i) {
        std::string value = statement.column_type(i) == SQLITE_FLOAT
                                ? fmt::format("{}", statement.column_double(i))
                                : cell_text(statement, i);
        line += (i ? "," : "") + csv_escape(value);
      }
      std::printf("%s\n", line.c_str());
    }
  } else {
    TextTable table(header);
    while (statement.step()) {
      std::vector<std::string> row;
      for (int i = 0; i < columns; ++i) row.push_back(cell_text(statement, i));
      table.add_row(std::move(row));
    }
    std::printf("%s(%zu row%s)\n", table.render().c_str(), table.row_count(),
                table.row_count() == 1 ? "" : "s");
  }
}

}  // namespace

void register_query_command(CLI::App& app) {
  auto options = std::make_shared<QueryOptions>();
  CLI::App* cmd =
      app.add_subcommand("query", "Run one read-only SQL statement on the results store");
  cmd->add_option("sql", options->sql, "The SQL statement (e.g. \"SELECT * FROM runs\")")
      ->required();
  cmd->add_option("--db", options->db, "Results database")->capture_default_str();
  auto* csv = cmd->add_flag("--csv", options->csv, "Print CSV");
  cmd->add_flag("--json", options->json, "Print a JSON array of objects")->excludes(csv);
  cmd->callback([options] { run_query(*options); });
}

}  // namespace lory::cli
