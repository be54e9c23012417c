// A thin RAII layer over the SQLite C API: connections, prepared statements, transactions.
// Every failure becomes a SqliteError naming the database file and the statement.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/support/diagnostics.h"

namespace lory {

class SqliteError : public UserError {
 public:
  SqliteError(const std::string& message, int code) : UserError(message), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql, const std::string& db_path);
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) = delete;
  ~Statement();

  Statement& bind(int index, int64_t value);
  Statement& bind(int index, double value);
  Statement& bind(int index, const std::string& value);
  Statement& bind_null(int index);
  // Steps once; true while a row is available.
  bool step();
  // Runs to completion, then resets for the next bind/step round.
  void run();
  void reset();

  int column_count() const;
  std::string column_name(int i) const;
  int column_type(
      int i) const;  // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL
  int64_t column_int(int i) const;
  double column_double(int i) const;
  std::string column_text(int i) const;
  bool is_readonly() const;
  // Text of whatever followed the first statement in the SQL given to the constructor.
  const std::string& tail() const { return tail_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
  std::string db_path_;
  std::string tail_;
};

class Database {
 public:
  enum class Mode { ReadWrite, ReadOnly };
  // ReadWrite creates the file (and its folder) when missing.
  Database(const std::string& path, Mode mode);
  Database(Database&&) noexcept;
  Database& operator=(Database&&) = delete;
  ~Database();

  void exec(const std::string& sql);
  Statement prepare(const std::string& sql);
  std::optional<int64_t> query_int(const std::string& sql);
  const std::string& path() const { return path_; }
  sqlite3* handle() { return db_; }

 private:
  // Opens `path` read-only as an immutable file (no -shm, no locks); false when that fails too.
  bool open_immutable(const std::string& path);

  sqlite3* db_ = nullptr;
  std::string path_;
};

// BEGIN IMMEDIATE: takes the write lock up front, so a busy database waits in the busy handler
// instead of failing later when a read lock would have to be upgraded.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();  // rolls back unless committed
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace lory
