#include "supervisor_lock.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/store/results_store.h"
#include "core/support/diagnostics.h"

namespace lory::cli {

namespace fs = std::filesystem;

namespace {

std::string lock_path(const std::string& db_path, const std::string& scope) {
  const fs::path db(db_path);
  return (db.parent_path() / (db.stem().string() + ".runs") / (scope + ".lock")).string();
}

std::string own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : raw) c = c == '\0' ? ' ' : c;
  while (!raw.empty() && raw.back() == ' ') raw.pop_back();
  return raw;
}

}  // namespace

SupervisorLock::SupervisorLock(const std::string& db_path, const std::string& scope) {
  const std::string path = lock_path(db_path, scope);
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int open_errno = errno;
    fs::path folder = fs::path(db_path).parent_path();
    if (folder.empty()) folder = ".";
    if (::access(folder.c_str(), W_OK) != 0) {
      throw UserError(fmt::format(
          "the folder '{}' of database '{}' cannot be written by this user: training writes "
          "the database, its journal and the runs' checkpoints there; pass a --db in a folder "
          "you can write (`lory status`, `query` and `report` read it where it is)",
          folder.string(), db_path));
    }
    throw UserError(
        fmt::format("cannot create the lock file '{}': {}", path, std::strerror(open_errno)));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    std::ifstream in(path);
    std::stringstream holder;
    holder << in.rdbuf();
    std::string who = holder.str();
    while (!who.empty() && who.back() == '\n') who.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK)
      throw UserError(fmt::format("cannot lock '{}': {}", path, std::strerror(error)));
    throw UserError(fmt::format(
        "'{}' in '{}' is being run by another lory process ({}); nothing was started. Wait "
        "for it (`lory status {} --db {}` shows progress) or stop it (Ctrl-C in its "
        "terminal, or kill -INT its process), then run again",
        scope, db_path, who.empty() ? "unknown" : who, scope.substr(0, scope.find('#')), db_path));
  }
  const std::string me = fmt::format("process {} on {}, since {}: {}", ::getpid(), current_host(),
                                     utc_now_iso8601(), own_command_line());
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t written = ::pwrite(fd_, me.data(), me.size(), 0);
    (void)written;  // the holder's description is a courtesy for messages; the lock is the flock
  }
}

SupervisorLock::~SupervisorLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock; the file stays for the next holder
}

}  // namespace lory::cli
