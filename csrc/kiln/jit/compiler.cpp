// compiler.cpp — spawn compiler processes (posix_spawn: cheap even from a large PyTorch process).
#include "kiln/jit/compiler.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "kiln/support/error.h"

extern char** environ;

namespace kiln::jit {
namespace {

constexpr int kOutputHeadLines = 40;

// Closes a file descriptor on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Spawns argv with stdout and stderr on out_fd. Every descriptor we open is O_CLOEXEC, so a
// child started by another thread at the same moment never holds our pipe or log open.
pid_t spawn(const Command& argv, int out_fd, const std::string& cwd) {
  KILN_CHECK(!argv.empty());
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  // Python ignores SIGPIPE and worker threads may block signals; the compiler should see neither.
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    throw UserError(str_cat("kiln could not run the C++ compiler '", argv[0], "': ", std::strerror(err),
                            (cwd.empty() ? "" : str_cat(" (in ", cwd, ")")),
                            ". Install g++ or set KILN_CXX=/path/to/c++."));
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;  // ECHILD: someone set SIGCHLD to SIG_IGN; status is lost
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string first_lines(const std::string& text, int n, int* total) {
  std::istringstream in(text);
  std::string line, out;
  int count = 0;
  while (std::getline(in, line)) {
    if (count++ < n) out += line + "\n";
  }
  *total = count;
  return out;
}

std::string log_name(std::size_t index) { return str_cat("cmd", index, ".log"); }

}  // namespace

int run_to_file(const Command& argv, const std::string& log_path, const std::string& cwd) {
  Fd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (log.fd < 0) {
    throw UserError(str_cat("kiln could not write the compiler log ", log_path, ": ", std::strerror(errno)));
  }
  return wait_for(spawn(argv, log.fd, cwd));
}

std::string run_capture(const Command& argv, int* status) {
  int fds[2];
  KILN_CHECK(::pipe2(fds, O_CLOEXEC) == 0, "pipe2: ", std::strerror(errno));
  Fd read_end(fds[0]);
  pid_t pid;
  {
    Fd write_end(fds[1]);  // closed here so that read() sees EOF when the child exits
    pid = spawn(argv, write_end.fd, "");
  }
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_end.fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, std::size_t(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  *status = wait_for(pid);
  return out;
}

BuildFlags build_flags(const Toolchain& tc, const std::vector<std::string>& target_flags,
                       const std::string& include_dir, const std::string& lib_dir, bool link_runtime) {
  BuildFlags flags;
  for (const std::string& f : tc.compile_flags) {
    if (f == "-march=native")
      flags.compile.insert(flags.compile.end(), target_flags.begin(), target_flags.end());
    else
      flags.compile.push_back(f);
  }
  if (!include_dir.empty()) flags.compile.push_back("-I" + include_dir);
  if (link_runtime) {
    KILN_CHECK(!lib_dir.empty(), "link_runtime needs lib_dir (the directory of libkiln_runtime.so)");
    flags.link = {"-L" + lib_dir, "-lkiln_runtime", "-Wl,-rpath," + lib_dir};
  }
  return flags;
}

std::string source_name(std::size_t index) { return str_cat("tu", index, ".cpp"); }

std::vector<Command> BuildPlan::all() const {
  std::vector<Command> out = compiles;
  if (!link.empty()) out.push_back(link);
  return out;
}

BuildPlan plan_build(const Toolchain& tc, const BuildFlags& flags, std::size_t num_sources,
                     const std::string& output_name) {
  KILN_CHECK(num_sources > 0, "a build needs at least one source");
  auto append = [](Command& to, const std::vector<std::string>& more) {
    to.insert(to.end(), more.begin(), more.end());
  };
  BuildPlan plan;
  if (num_sources == 1) {  // one process compiles and links: no .o round trip
    Command cmd = tc.command;
    append(cmd, flags.compile);
    append(cmd, tc.link_flags);
    append(cmd, {source_name(0), "-o", output_name});
    append(cmd, flags.link);
    plan.compiles.push_back(std::move(cmd));
    return plan;
  }
  plan.link = tc.command;
  append(plan.link, tc.link_flags);
  for (std::size_t i = 0; i < num_sources; ++i) {
    std::string object = str_cat("tu", i, ".o");
    Command cmd = tc.command;
    append(cmd, flags.compile);
    append(cmd, {"-c", source_name(i), "-o", object});
    plan.compiles.push_back(std::move(cmd));
    plan.link.push_back(object);
  }
  append(plan.link, {"-o", output_name});
  append(plan.link, flags.link);
  return plan;
}

BuildOutcome run_build(const BuildPlan& plan, const std::string& work_dir, const std::string& log_path, int jobs) {
  const std::vector<Command> commands = plan.all();
  const std::size_t num_compiles = plan.compiles.size();
  std::vector<int> status(commands.size(), 0);
  std::vector<char> ran(commands.size(), 0);  // not vector<bool>: threads write neighbours
  auto run_one = [&](std::size_t i) {
    status[i] = run_to_file(commands[i], work_dir + "/" + log_name(i), work_dir);
    ran[i] = 1;
  };

  // Compiles: one worker thread per job, each pulling the next TU and blocking in waitpid on its
  // own child (never waitpid(-1), which could reap the host program's other children).
  if (jobs <= 0) jobs = usable_cores();
  const std::size_t workers = std::min<std::size_t>(std::size_t(jobs), num_compiles);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr spawn_error;
  std::mutex error_mutex;
  auto worker = [&] {
    for (std::size_t i; !failed && (i = next++) < num_compiles;) {
      try {
        run_one(i);
        if (status[i] != 0) failed = true;
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!spawn_error) spawn_error = std::current_exception();
        failed = true;
      }
    }
  };
  if (workers <= 1) {
    worker();
  } else {
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < workers; ++w) threads.emplace_back(worker);
    for (auto& t : threads) t.join();
  }
  if (spawn_error) std::rethrow_exception(spawn_error);
  if (!failed && !plan.link.empty()) run_one(commands.size() - 1);

  // One log with every command that ran and what it printed, in plan order.
  BuildOutcome outcome;
  std::ofstream log(log_path, std::ios::binary | std::ios::trunc);
  for (std::size_t i = 0; i < commands.size(); ++i) {
    if (!ran[i]) continue;
    std::string output = read_file(work_dir + "/" + log_name(i));
    ::unlink((work_dir + "/" + log_name(i)).c_str());
    log << "$ " << shell_quote(commands[i]) << "\n" << output;
    if (status[i] != 0) log << "[exit status " << status[i] << "]\n";
    if (status[i] != 0 && outcome.ok) {
      outcome.ok = false;
      outcome.failed = commands[i];
      outcome.status = status[i];
      int total = 0;
      outcome.output_head = first_lines(output, kOutputHeadLines, &total);
      if (total > kOutputHeadLines) {
        outcome.output_head += str_cat("... (", total - kOutputHeadLines, " more lines in the log)\n");
      }
    }
  }
  return outcome;
}

std::string failure_message(const BuildOutcome& outcome, const std::string& log_path) {
  return str_cat("kiln: the C++ compiler failed on kiln's generated code (exit status ", outcome.status,
                 "); this graph will run eagerly.\n", "command: ", shell_quote(outcome.failed), "\n",
                 "full log: ", log_path, "\n", "compiler output:\n", outcome.output_head);
}

std::string shell_quote(const Command& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !arg.empty() && arg.find_first_not_of(
                                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_-+=/.,:@%") == std::string::npos;
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

int usable_cores() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

}  // namespace kiln::jit
