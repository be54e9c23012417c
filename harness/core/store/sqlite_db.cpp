#include "core/store/sqlite_db.h"

#include <fmt/format.h>

#include <filesystem>

namespace lory {

namespace {

[[noreturn]] void fail(sqlite3* db, int code, const std::string& what, const std::string& path) {
  const char* message = db ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  throw SqliteError(fmt::format("database '{}': {}: {}", path, what, message), code);
}

}  // namespace

Statement::Statement(sqlite3* db, const std::string& sql, const std::string& db_path)
    : db_(db), sql_(sql), db_path_(db_path) {
  const char* tail = nullptr;
  const int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt_, &tail);
  if (rc != SQLITE_OK) fail(db_, rc, "cannot prepare \"" + sql + "\"", db_path_);
  if (tail) tail_ = tail;
}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_),
      stmt_(other.stmt_),
      sql_(std::move(other.sql_)),
      db_path_(std::move(other.db_path_)),
      tail_(std::move(other.tail_)) {
  other.stmt_ = nullptr;
}

Statement::~Statement() {
  if (stmt_) sqlite3_finalize(stmt_);
}

Statement& Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, double value) {
  sqlite3_bind_double(stmt_, index, value);
  return *this;
}

Statement& Statement::bind(int index, const std::string& value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

bool Statement::step() {
  if (!stmt_) return false;  // an empty statement (only whitespace or a comment)
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  const std::string message = sqlite3_errmsg(db_);
  sqlite3_reset(stmt_);
  throw SqliteError(fmt::format("database '{}': \"{}\" failed: {}", db_path_, sql_, message), rc);
}

void Statement::run() {
  while (step()) {
  }
  reset();
}

void Statement::reset() {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int Statement::column_count() const { return stmt_ ? sqlite3_column_count(stmt_) : 0; }
std::string Statement::column_name(int i) const { return sqlite3_column_name(stmt_, i); }
int Statement::column_type(int i) const { return sqlite3_column_type(stmt_, i); }
int64_t Statement::column_int(int i) const { return sqlite3_column_int64(stmt_, i); }
double Statement::column_double(int i) const { return sqlite3_column_double(stmt_, i); }
std::string Statement::column_text(int i) const {
  const unsigned char* text = sqlite3_column_text(stmt_, i);
  return text ? reinterpret_cast<const char*>(text) : "";
}
bool Statement::is_readonly() const { return !stmt_ || sqlite3_stmt_readonly(stmt_) != 0; }

Database::Database(const std::string& path, Mode mode) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code directory_ec;
  if (fs::is_directory(path, directory_ec)) {
    throw SqliteError(fmt::format("'{}' is a folder, not a database file", path), SQLITE_CANTOPEN);
  }
  if (mode == Mode::ReadOnly) {
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      throw SqliteError(
          fmt::format("database '{}' does not exist (pass --db PATH, or run an experiment first)",
                      path),
          SQLITE_CANTOPEN);
    }
  } else {
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) fs::create_directories(parent, ec);
  }
  const int flags =
      mode == Mode::ReadOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    throw SqliteError(fmt::format("database '{}' cannot be opened: {}", path, message), rc);
  }
  // Writers wait for each other instead of failing with "database is locked".
  sqlite3_busy_timeout(db_, 60000);
  try {
    // Touching the schema surfaces "file is not a database" here, with the path, not later.
    query_int("SELECT count(*) FROM sqlite_master");
  } catch (const SqliteError& e) {
    sqlite3_close(db_);
    db_ = nullptr;
    // A WAL-mode database in a folder this user cannot write (a committed study, a shared
    // read-only copy): reading needs the -shm file, which cannot be created there. Nobody can be
    // writing to it then, so it is read as an immutable file.
    const int primary = e.code() & 0xff;
    if (mode == Mode::ReadOnly && (primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY) &&
        open_immutable(path)) {
      exec("PRAGMA query_only=ON");
      return;
    }
    throw SqliteError(fmt::format("'{}' is not a usable lory results database: {}", path, e.what()),
                      e.code());
  }
  if (mode == Mode::ReadWrite) {
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec("PRAGMA foreign_keys=ON");
  } else {
    exec("PRAGMA query_only=ON");
  }
}

bool Database::open_immutable(const std::string& path) {
  std::string uri = "file:";
  for (const char c : std::filesystem::absolute(path).string()) {
    // Percent-encode what a URI path cannot hold as is.
    if (c == '%' || c == '?' || c == '#') {
      uri += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    } else {
      uri += c;
    }
  }
  uri += "?immutable=1";
  if (sqlite3_open_v2(uri.c_str(), &db_,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    if (db_) sqlite3_close(db_);
    db_ = nullptr;
    return false;
  }
  try {
    query_int("SELECT count(*) FROM sqlite_master");
    return true;
  } catch (const SqliteError&) {
    sqlite3_close(db_);
    db_ = nullptr;
    return false;
  }
}

Database::Database(Database&& other) noexcept : db_(other.db_), path_(std::move(other.path_)) {
  other.db_ = nullptr;
}

Database::~Database() {
  if (db_) sqlite3_close(db_);
}

void Database::exec(const std::string& sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    const std::string message = error ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    throw SqliteError(fmt::format("database '{}': \"{}\" failed: {}", path_, sql, message), rc);
  }
}

Statement Database::prepare(const std::string& sql) { return Statement(db_, sql, path_); }

std::optional<int64_t> Database::query_int(const std::string& sql) {
  Statement statement = prepare(sql);
  if (!statement.step() || statement.column_type(0) == SQLITE_NULL) return std::nullopt;
  return statement.column_int(0);
}

Transaction::Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (!done_) {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
      // The transaction may already have been rolled back by SQLite itself (e.g. on I/O error).
    }
  }
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace lory
