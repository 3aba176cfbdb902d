// compiler.h — run the system compiler: subprocesses without a shell, parallel TUs, then a link.
#pragma once
#include <string>
#include <vector>

#include "kiln/jit/toolchain.h"

namespace kiln::jit {

using Command = std::vector<std::string>;  // argv; argv[0] is an absolute path

// Runs argv in directory cwd ("" = ours) with stdin from /dev/null and stdout+stderr written to
// the file at log_path. Returns the exit status (128+signal when killed, -1 when unknown).
// Throws UserError when the program cannot be started.
int run_to_file(const Command& argv, const std::string& log_path, const std::string& cwd = "");

// Runs argv and returns its stdout+stderr; *status receives the exit status.
std::string run_capture(const Command& argv, int* status);

// Flags for one build: the toolchain's, with the target's in place of its -march=native, plus the
// runtime's include and library directories.
struct BuildFlags {
  std::vector<std::string> compile;  // before the sources
  std::vector<std::string> link;     // after the objects (-L, -l, -rpath)
};
BuildFlags build_flags(const Toolchain& tc, const std::vector<std::string>& target_flags,
                       const std::string& include_dir, const std::string& lib_dir, bool link_runtime);

// The commands for one shared object. They run inside a work directory and name files relative
// to it (tu<i>.cpp, tu<i>.o, the output), so the directory can be moved or re-run by hand.
// Several TUs: independent compiles (run in parallel) then one link; one TU: a single command.
struct BuildPlan {
  std::vector<Command> compiles;
  Command link;  // empty when the single compile also links
  std::vector<Command> all() const;
};
BuildPlan plan_build(const Toolchain& tc, const BuildFlags& flags, std::size_t num_sources,
                     const std::string& output_name);
std::string source_name(std::size_t index);  // "tu<index>.cpp"

struct BuildOutcome {
  bool ok = true;
  Command failed;           // the command that failed
  int status = 0;           // its exit status
  std::string output_head;  // the first ~40 lines of its output
};

// Runs the plan in work_dir with up to `jobs` compiles at once (0 = usable cores), then the link.
// Writes every command and its output, in order, to log_path. Stops at the first failure.
BuildOutcome run_build(const BuildPlan& plan, const std::string& work_dir, const std::string& log_path, int jobs = 0);

// The UserError text for a failed build: what failed, where the full log is, that the graph runs eagerly.
std::string failure_message(const BuildOutcome& outcome, const std::string& log_path);

// A command quoted as a POSIX shell needs it (for logs, messages and the debug dir's build.sh).
std::string shell_quote(const Command& argv);

int usable_cores();

}  // namespace kiln::jit
