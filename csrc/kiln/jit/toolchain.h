// toolchain.h — which C++ compiler kiln runs, with which flags, for which target ISA.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace kiln::jit {

struct Toolchain {
  std::vector<std::string> command;        // program (absolute path) plus any leading words from $CXX
  std::string real_path;                   // the program with symlinks resolved (alternatives, versions)
  std::string version;                     // first line of `--version`
  std::string isa;                         // what -march=native resolves to, e.g. "cooperlake"
  std::string target_flags;                // every target option -march=native expands to (features, tuning)
  std::vector<std::string> compile_flags;  // -O3 -march=native ... (no -I; that is per build)
  std::vector<std::string> link_flags;     // -shared (no -L/-l; that is per build)

  // Everything above, as one string: it goes into every cache key, so that code built for one
  // compiler or CPU is never loaded for another.
  std::string identity() const;
};

// Detected once per process (two short subprocesses, a few ms) and cached. Throws kiln::UserError
// when no compiler is found or it cannot target -march=native.
std::shared_ptr<const Toolchain> toolchain();

// Forget the cached toolchain so the next toolchain() call re-reads $KILN_CXX/$CXX/$PATH.
void reset_toolchain_for_testing();

}  // namespace kiln::jit
