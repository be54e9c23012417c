// Collects user-facing errors with their source location so that every problem in an input
// file is reported at once ("file:line:col: error: ..."), instead of only the first.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace lory {

struct SourceLocation {
  std::shared_ptr<const std::string> file;
  int line = 0;
  int column = 0;

  bool known() const { return file != nullptr; }
  std::string to_string() const;  // "path:line:col", "path" or "<unknown>"
};

struct Diagnostic {
  SourceLocation where;
  std::string message;
};

class Diagnostics {
 public:
  void error(const SourceLocation& where, std::string message);
  // Something legal that is almost certainly not meant (lr = 0): shown, but nothing stops.
  void warning(const SourceLocation& where, std::string message);
  bool empty() const { return errors_.empty(); }
  size_t size() const { return errors_.size(); }
  const std::vector<Diagnostic>& errors() const { return errors_; }
  const std::vector<Diagnostic>& warnings() const { return warnings_; }
  // One line per error ("file:line:col: error: ..."), sorted by file, line and column, duplicates
  // removed; format_warnings() likewise with "warning:".
  std::string format() const;
  std::string format_warnings() const;

 private:
  std::vector<Diagnostic> errors_;
  std::vector<Diagnostic> warnings_;
};

// Thrown where one error ends the operation; the message is already user-facing.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The work was stopped by a signal (Ctrl-C, SIGTERM, SIGHUP): what was done is kept and a rerun
// goes on from there. The programs exit with exit_status::kInterrupted.
class Interrupted : public UserError {
 public:
  using UserError::UserError;
};

// The input was right but the work it asked for did not finish: a run that failed or diverged, a
// grid with cells that are not done. The programs exit with exit_status::kNotDone.
class NotDone : public UserError {
 public:
  using UserError::UserError;
};

}  // namespace lory
