// jit.cpp — build_or_load: key → in-process memo → verified disk entry → compile, install, load.
#include "kiln/jit/jit.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "kiln/jit/compiler.h"
#include "kiln/jit/disk_cache.h"
#include "kiln/jit/toolchain.h"
#include "kiln/support/error.h"
#include "kiln/support/hash.h"

namespace kiln::jit {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOutputName = "graph.so";

// One per final key: serialises builds of that key within the process (one compile, not one per
// thread) and remembers the loaded library while anybody still uses it.
struct MemoEntry {
  std::mutex build_mutex;
  std::weak_ptr<Library> library;
};

std::mutex g_memo_mutex;
std::unordered_map<std::string, std::shared_ptr<MemoEntry>> g_memo;

std::mutex g_stats_mutex;
JitStats g_stats;

std::shared_ptr<MemoEntry> memo_entry(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_memo_mutex);
  // Now and then drop entries nobody uses: unloaded, and not held by a build in flight
  // (builders hold a reference, taken under this same lock).
  if (g_memo.size() >= 1024 && !g_memo.contains(key)) {
    std::erase_if(g_memo, [](const auto& kv) { return kv.second.use_count() == 1 && kv.second->library.expired(); });
  }
  auto& entry = g_memo[key];
  if (!entry) entry = std::make_shared<MemoEntry>();
  return entry;
}

template <class F>
void count(F&& update) {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  update(g_stats);
}

std::string read_text(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  *ok = bool(in);
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  KILN_USER_CHECK(bool(out), "kiln: cannot write ", path, " (disk full or not writable?)");
}

// Hash of every header generated code can include (kiln_runtime.h, and the inline helpers of
// kiln_prelude.h beside it, whose semantics are compiled into each entry).
std::string runtime_headers_hash(const std::string& include_dir) {
  if (include_dir.empty()) return "none";
  const fs::path dir = fs::path(include_dir) / "kiln" / "runtime";
  bool ok = false;
  read_text((dir / "kiln_runtime.h").string(), &ok);
  KILN_USER_CHECK(ok, "kiln: its runtime header is missing (", (dir / "kiln_runtime.h").string(),
                  "); the installation is incomplete. Reinstall kiln.");
  std::vector<fs::path> headers;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".h" && entry.is_regular_file(ec)) headers.push_back(entry.path());
  }
  std::sort(headers.begin(), headers.end());
  Sha256 hash;
  for (const auto& header : headers) {
    std::string text = read_text(header.string(), &ok);
    KILN_USER_CHECK(ok, "kiln: cannot read its runtime header ", header.string());
    hash.update(str_cat(header.filename().string(), '\0', text.size(), '\0')).update(text);
  }
  return hash.finish_hex();
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// Everything needed to look up or build one request.
struct Prepared {
  std::shared_ptr<const Toolchain> toolchain;
  BuildFlags flags;
  std::string key_material;  // what the key hashes, kept for the debug dir
  std::string key;
};

Prepared prepare(const BuildRequest& request) {
  KILN_CHECK(!request.key.empty(), "BuildRequest.key is empty");
  Prepared p;
  p.toolchain = toolchain();
  p.flags = build_flags(*p.toolchain,
                        request.target_flags.empty() ? std::vector<std::string>{"-march=native"} : request.target_flags,
                        request.include_dir, request.lib_dir, request.link_runtime);
  // Each field on its own labelled line, so no two different requests hash the same text.
  p.key_material =
      str_cat("kiln jit key v1\n", "request key: ", request.key, "\n", p.toolchain->identity(),
              "build compile flags: ", join(p.flags.compile), "\n", "build link flags: ", join(p.flags.link), "\n",
              "runtime headers sha256: ", runtime_headers_hash(request.include_dir), "\n");
  p.key = sha256_hex(p.key_material);
  return p;
}

std::string build_script(const BuildPlan& plan, const std::string& key) {
  std::string text = str_cat("#!/bin/sh\n# kiln: the commands that build cache entry ", key,
                             ".so (kiln runs the compiles in parallel).\nset -e\ncd \"$(dirname \"$0\")\"\n");
  for (const auto& cmd : plan.all()) text += shell_quote(cmd) + "\n";
  return text;
}

// The debug dir holds the sources, build.sh and the key's inputs, whether or not we compile.
void write_debug_files(const std::string& dir, const BuildRequest& request, const Prepared& p, const BuildPlan& plan) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  KILN_USER_CHECK(!ec, "kiln: cannot create the debug directory ", dir, ": ", ec.message());
  for (std::size_t i = 0; i < request.sources.size(); ++i) write_text(dir + "/" + source_name(i), request.sources[i]);
  write_text(dir + "/build.sh", build_script(plan, p.key));
  ::chmod((dir + "/build.sh").c_str(), 0755);
  write_text(dir + "/cache_key.txt", p.key + "\n\n" + p.key_material);
}

BuildResult hit(std::shared_ptr<Library> library) {
  BuildResult result;
  result.so_path = library->path();
  result.library = std::move(library);
  result.cache_hit = true;
  return result;
}

// The memo, then the disk. Call with entry.build_mutex held.
std::optional<BuildResult> load_existing(const Prepared& p, MemoEntry& entry) {
  if (auto library = entry.library.lock()) {
    count([](JitStats& s) { ++s.memory_hits; });
    return hit(std::move(library));
  }
  DiskCache cache(cache_dir());
  bool was_bad = false;
  std::optional<std::string> path = cache.lookup(p.key, &was_bad);
  if (path) {
    try {
      auto library = std::make_shared<Library>(*path);
      entry.library = library;
      count([](JitStats& s) { ++s.disk_hits; });
      return hit(std::move(library));
    } catch (const UserError&) {
      cache.remove(p.key);  // verified bytes the loader still refuses: rebuild them
      was_bad = true;
    }
  }
  if (was_bad) count([](JitStats& s) { ++s.bad_entries; });
  return std::nullopt;
}

BuildResult compile_and_load(const BuildRequest& request, const Prepared& p, MemoEntry& entry) {
  KILN_CHECK(!request.sources.empty(), "BuildRequest.sources is empty");
  DiskCache cache(cache_dir());
  const bool debug = !request.debug_dir.empty();
  const std::string work_dir = debug ? request.debug_dir : cache.make_work_dir(p.key.substr(0, 16));
  const BuildPlan plan = plan_build(*p.toolchain, p.flags, request.sources.size(), kOutputName);
  write_debug_files(work_dir, request, p, plan);

  const auto start = std::chrono::steady_clock::now();
  BuildOutcome outcome;
  try {
    outcome = run_build(plan, work_dir, work_dir + "/compile.log");
  } catch (...) {  // the compiler could not even start: nothing worth keeping
    std::error_code ec;
    if (!debug) fs::remove_all(work_dir, ec);
    throw;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  count([&](JitStats& s) {
    ++s.compiles;
    s.compile_seconds += seconds;
  });

  if (!outcome.ok) {
    std::string kept = work_dir;
    if (!debug) {  // keep the evidence, one directory per key, where a person can find it
      std::error_code ec;
      fs::create_directories(cache.dir() + "/failed", ec);
      fs::remove_all(cache.failed_dir(p.key), ec);
      fs::rename(work_dir, cache.failed_dir(p.key), ec);
      if (!ec) kept = cache.failed_dir(p.key);
    }
    throw UserError(failure_message(outcome, kept + "/compile.log"));
  }

  const std::string built = work_dir + "/" + kOutputName;
  const std::string so_path = cache.install(p.key, built);
  std::shared_ptr<Library> library;
  try {
    library = std::make_shared<Library>(so_path);
  } catch (const UserError&) {
    // Another process may have replaced or removed the entry in between; our own copy is good.
    try {
      library = std::make_shared<Library>(built);
    } catch (const UserError& e) {
      throw UserError(str_cat(e.what(), "\n(is ", cache.dir(),
                              " on a filesystem mounted noexec? Set KILN_CACHE_DIR to another directory.)"));
    }
  }
  if (!debug) {
    std::error_code ec;
    fs::remove_all(work_dir, ec);  // a loaded file stays mapped after its name is gone
  }
  entry.library = library;

  BuildResult result;
  result.library = std::move(library);
  result.cache_hit = false;
  result.compile_seconds = seconds;
  result.so_path = so_path;
  return result;
}

}  // namespace

std::string cache_key(const BuildRequest& request) { return prepare(request).key; }

std::string cache_dir() { return ensure_private_dir(default_cache_dir()); }

std::optional<BuildResult> try_load(const BuildRequest& request) {
  const Prepared p = prepare(request);
  auto entry = memo_entry(p.key);
  std::lock_guard<std::mutex> lock(entry->build_mutex);
  return load_existing(p, *entry);
}

BuildResult build_or_load(const BuildRequest& request) {
  const Prepared p = prepare(request);
  auto entry = memo_entry(p.key);
  std::lock_guard<std::mutex> lock(entry->build_mutex);
  if (auto result = load_existing(p, *entry)) {
    if (!request.debug_dir.empty()) {
      const BuildPlan plan =
          plan_build(*p.toolchain, p.flags, std::max<std::size_t>(request.sources.size(), 1), kOutputName);
      write_debug_files(request.debug_dir, request, p, plan);
      write_text(request.debug_dir + "/compile.log", "cache hit: " + result->so_path + "\n");
    }
    return *result;
  }
  return compile_and_load(request, p, *entry);
}

JitStats stats() {
  std::lock_guard<std::mutex> lock(g_stats_mutex);
  return g_stats;
}

void note_bad_entry() {
  count([](JitStats& s) { ++s.bad_entries; });
}

}  // namespace kiln::jit
