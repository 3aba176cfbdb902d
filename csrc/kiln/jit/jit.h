// jit.h — the JIT's one entry point: C++ source text in, a loaded shared object out (cached on disk).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/jit/library.h"

namespace kiln::jit {

struct BuildRequest {
  std::vector<std::string> sources;  // one C++ translation unit per element
  std::string key;                   // caller's content hash (hex) of everything that defines the code
  std::string include_dir;           // directory containing kiln/runtime/kiln_runtime.h ("" = none)
  std::string lib_dir;               // directory containing libkiln_runtime.so
  std::string debug_dir;             // if non-empty: write sources, the exact compile commands and the log here
  bool link_runtime = true;          // link -lkiln_runtime from lib_dir (tests of standalone code turn it off)
  // The target's compiler options (Target::compiler_flags); empty means -march=native.
  std::vector<std::string> target_flags;
};

struct BuildResult {
  std::shared_ptr<Library> library;
  bool cache_hit = false;
  double compile_seconds = 0;  // time spent in the compiler (0 on a hit)
  std::string so_path;
};

// The final cache key: sha256 of request.key + toolchain identity (compiler, version, target ISA)
// + every flag (including -I/-L paths) + sha256 of the runtime headers' contents (kiln_runtime.h
// and every other .h beside it, e.g. kiln_prelude.h). Sources are not part of it: request.key must
// already name them, so that a warm start can look up code it has not generated.
std::string cache_key(const BuildRequest& request);

// Returns the loaded library for the request: from this process's memo, else from the disk cache
// (verified), else compiled now (sources in parallel, one process per TU) and installed.
// Throws kiln::UserError when there is no compiler or the compiler rejects the code (the message
// carries the compiler's first lines and the log's path); the caller runs the graph eagerly.
BuildResult build_or_load(const BuildRequest& request);

// Like build_or_load but never compiles (request.sources are ignored): nullopt on a miss.
std::optional<BuildResult> try_load(const BuildRequest& request);

std::string cache_dir();  // resolved, created (0700) and checked

// Counters since process start, for kiln.stats().
struct JitStats {
  std::int64_t compiles = 0;     // builds that ran the compiler
  std::int64_t disk_hits = 0;    // loaded from the disk cache
  std::int64_t memory_hits = 0;  // already loaded in this process
  std::int64_t bad_entries = 0;  // cache entries found corrupt (or unloadable) and rebuilt
  double compile_seconds = 0;    // total time in the compiler
};
JitStats stats();
void note_bad_entry();  // a corrupt non-code cache entry was found (and deleted)

}  // namespace kiln::jit
