// disk_cache.h — compiled graphs on disk, by key: written atomically, verified before use.
#pragma once
#include <optional>
#include <string>

namespace kiln::jit {

// $KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln (not created).
std::string default_cache_dir();

// Creates `path` (and missing parents) with mode 0700, or checks an existing one: it must be a
// directory owned by this user and not writable by group or others (anyone who can write there
// can make kiln load their code). Throws kiln::UserError otherwise. Returns `path`.
std::string ensure_private_dir(const std::string& path);

// Entries are <dir>/<key>.so and <dir>/<key>.sha256 (the SHA-256 of the .so's bytes). Files are
// only ever replaced by rename(), never rewritten in place, so a process that has an entry loaded
// keeps its (unlinked) inode and concurrent builders of one key cannot corrupt each other.
class DiskCache {
 public:
  explicit DiskCache(std::string dir);  // dir: already passed through ensure_private_dir

  const std::string& dir() const { return dir_; }
  std::string so_path(const std::string& key) const;
  std::string hash_path(const std::string& key) const;

  // The path of a verified entry (ELF magic, hash match), or nullopt. A bad, truncated or
  // half-written entry is deleted and reported as a miss (*was_bad set when given).
  std::optional<std::string> lookup(const std::string& key, bool* was_bad = nullptr) const;

  // Copies built_file into the cache under key (hash file first, then the .so, each by
  // temp file + rename) and returns the entry's .so path.
  std::string install(const std::string& key, const std::string& built_file) const;

  void remove(const std::string& key) const;
  // Small entries that are not code (a graph rewrite decided before AOTAutograd): <dir>/<key>.blob,
  // whose first line is the SHA-256 of the rest. load_blob returns the payload of a verified entry;
  // a bad one is deleted and reported as a miss (*was_bad set when given).
  std::optional<std::string> load_blob(const std::string& key, bool* was_bad = nullptr) const;
  void store_blob(const std::string& key, const std::string& payload) const;

  // A fresh private directory for one build's sources, objects and log: <dir>/tmp/<prefix>-XXXXXX.
  std::string make_work_dir(const std::string& prefix) const;

  // Where a failed build's directory is kept for inspection: <dir>/failed/<key>.
  std::string failed_dir(const std::string& key) const;

 private:
  std::string dir_;
};

}  // namespace kiln::jit
