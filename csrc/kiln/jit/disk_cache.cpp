// disk_cache.cpp — the cache directory's safety checks and its atomic, verified entries.
#include "kiln/jit/disk_cache.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "kiln/support/error.h"
#include "kiln/support/hash.h"

namespace kiln::jit {
namespace {

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string home_dir() {
  if (const char* home = std::getenv("HOME"); home && *home) return home;
  if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_dir) return pw->pw_dir;
  throw UserError("kiln: cannot find a cache directory ($HOME is unset); set KILN_CACHE_DIR=/path/to/dir.");
}

bool non_empty_env(const char* name, std::string* value) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  *value = v;
  return true;
}

// Reads a whole file; false when it cannot be opened or read.
bool read_all(const std::string& path, std::string* out) {
  Fd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd < 0) return false;
  struct stat st;
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  out->clear();
  out->reserve(std::size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(f.fd, buf, sizeof buf);
    if (n > 0) {
      out->append(buf, std::size_t(n));
    } else if (n == 0) {
      return true;
    } else if (errno != EINTR) {
      return false;
    }
  }
}

// Writes bytes to path by way of a uniquely named temp file in the same directory and rename():
// a reader sees the old file or the new one, never a partial one; the last writer wins.
void write_atomically(const std::string& dir, const std::string& path, const std::string& bytes) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  std::string tmp = str_cat(dir, "/.", name, ".tmp-XXXXXX");
  Fd f(::mkostemp(tmp.data(), O_CLOEXEC));  // mode 0600, a name no other process has
  if (f.fd < 0) throw UserError(str_cat("kiln: cannot write to the cache ", dir, ": ", std::strerror(errno)));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(f.fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      throw UserError(str_cat("kiln: cannot write ", tmp, ": ", std::strerror(err)));
    }
    done += std::size_t(n);
  }
  // No fsync: after a crash a renamed-but-empty file fails verification and is rebuilt.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw UserError(str_cat("kiln: cannot write ", path, ": ", std::strerror(err)));
  }
}

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    throw UserError(str_cat("kiln: cannot create the cache directory ", path, ": ", std::strerror(errno),
                            ". Set KILN_CACHE_DIR to a writable directory."));
  }
}

void check_key(const std::string& key) {
  KILN_CHECK(!key.empty() && key.find_first_not_of("0123456789abcdef") == std::string::npos,
             "a cache key must be lowercase hex, got '", key, "'");
}

}  // namespace

std::string default_cache_dir() {
  std::string dir;
  if (non_empty_env("KILN_CACHE_DIR", &dir)) {
  } else if (non_empty_env("XDG_CACHE_HOME", &dir)) {
    dir += "/kiln";
  } else {
    dir = home_dir() + "/.cache/kiln";
  }
  // Absolute, so entries stay valid if the process changes directory, and dlopen never searches.
  std::error_code ec;
  auto absolute = std::filesystem::absolute(dir, ec).lexically_normal().string();
  if (!ec) dir = absolute;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

std::string ensure_private_dir(const std::string& path) {
  KILN_USER_CHECK(!path.empty(), "kiln: the cache directory is an empty path; set KILN_CACHE_DIR.");
  // Create missing ancestors too, each 0700 (the XDG convention for ~/.cache).
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string prefix = path.substr(0, slash);
    struct stat st;
    if (::stat(prefix.c_str(), &st) != 0) make_dir(prefix);
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    make_dir(path);
    ::chmod(path.c_str(), 0700);  // exactly 0700 whatever the umask
    KILN_USER_CHECK(::stat(path.c_str(), &st) == 0, "kiln: cannot create the cache directory ", path, ": ",
                    std::strerror(errno));
  }
  KILN_USER_CHECK(S_ISDIR(st.st_mode), "kiln: the cache path ", path,
                  " exists and is not a directory; set KILN_CACHE_DIR to a directory of your own.");
  KILN_USER_CHECK(st.st_uid == ::geteuid(), "kiln: refusing the cache directory ", path, ": it belongs to user id ",
                  st.st_uid, ", not to you (", ::geteuid(),
                  "), and kiln loads code from it. Set KILN_CACHE_DIR to a directory of your own.");
  KILN_USER_CHECK((st.st_mode & (S_IWGRP | S_IWOTH)) == 0, "kiln: refusing the cache directory ", path,
                  ": it is writable by group or others, and kiln loads code from it. Run `chmod 700 ", path,
                  "` or set KILN_CACHE_DIR to a private directory.");
  return path;
}

DiskCache::DiskCache(std::string dir) : dir_(std::move(dir)) {}

std::string DiskCache::so_path(const std::string& key) const { return dir_ + "/" + key + ".so"; }
std::string DiskCache::hash_path(const std::string& key) const { return dir_ + "/" + key + ".sha256"; }
std::string DiskCache::failed_dir(const std::string& key) const { return dir_ + "/failed/" + key; }

std::optional<std::string> DiskCache::lookup(const std::string& key, bool* was_bad) const {
  check_key(key);
  if (was_bad) *was_bad = false;
  const std::string so = so_path(key);
  std::string bytes, recorded;
  struct stat st;
  if (::lstat(so.c_str(), &st) != 0) return std::nullopt;  // absent: an ordinary miss
  bool good = read_all(so, &bytes) && bytes.size() >= 64 &&
              bytes.compare(0, 4,
                            "\x7f"
                            "ELF") == 0 &&
              read_all(hash_path(key), &recorded);
  if (good) {
    recorded.erase(recorded.find_last_not_of(" \n\r\t") + 1);
    good = recorded == sha256_hex(bytes);
  }
  if (good) return so;
  if (was_bad) *was_bad = true;
  remove(key);  // truncated, overwritten or half-written: rebuild rather than dlopen it
  return std::nullopt;
}

std::string DiskCache::install(const std::string& key, const std::string& built_file) const {
  check_key(key);
  std::string bytes;
  KILN_CHECK(read_all(built_file, &bytes), "cannot read the compiler's output ", built_file);
  // The hash first: once the .so is visible, its hash already is.
  write_atomically(dir_, hash_path(key), sha256_hex(bytes) + "\n");
  write_atomically(dir_, so_path(key), bytes);
  return so_path(key);
}

void DiskCache::remove(const std::string& key) const {
  check_key(key);
  std::error_code ec;  // remove_all: whatever is in the way, even a directory
  std::filesystem::remove_all(so_path(key), ec);
  std::filesystem::remove_all(hash_path(key), ec);
}

std::optional<std::string> DiskCache::load_blob(const std::string& key, bool* was_bad) const {
  check_key(key);
  if (was_bad) *was_bad = false;
  const std::string path = dir_ + "/" + key + ".blob";
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  std::string bytes;
  if (read_all(path, &bytes)) {
    const size_t nl = bytes.find('\n');
    if (nl != std::string::npos && bytes.compare(0, nl, sha256_hex(bytes.substr(nl + 1))) == 0)
      return bytes.substr(nl + 1);
  }
  if (was_bad) *was_bad = true;
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  return std::nullopt;
}

void DiskCache::store_blob(const std::string& key, const std::string& payload) const {
  check_key(key);
  write_atomically(dir_, dir_ + "/" + key + ".blob", sha256_hex(payload) + "\n" + payload);
}

std::string DiskCache::make_work_dir(const std::string& prefix) const {
  make_dir(dir_ + "/tmp");
  std::string path = str_cat(dir_, "/tmp/", prefix, "-XXXXXX");
  KILN_USER_CHECK(::mkdtemp(path.data()) != nullptr, "kiln: cannot create a build directory in ", dir_,
                  "/tmp: ", std::strerror(errno));
  return path;
}

}  // namespace kiln::jit
