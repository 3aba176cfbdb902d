// toolchain.cpp — find the compiler once per process and ask it what -march=native means here.
#include "kiln/jit/toolchain.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>

#include "kiln/jit/compiler.h"
#include "kiln/support/error.h"

namespace kiln::jit {
namespace {

namespace fs = std::filesystem;

constexpr const char* kHowToFix = "Install g++ (e.g. `apt-get install g++`) or set KILN_CXX=/path/to/c++.";

std::mutex g_mutex;
std::shared_ptr<const Toolchain> g_toolchain;

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

std::string join(const std::vector<std::string>& words, const char* sep = " ") {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : sep) + w;
  return out;
}

bool is_executable_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

// An absolute path for `name` (a path, or a program searched on $PATH); "" when not found.
std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return is_executable_file(name) ? fs::absolute(name).lexically_normal().string() : "";
  }
  const char* path_env = std::getenv("PATH");
  std::istringstream dirs(path_env && *path_env ? path_env : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    fs::path candidate = fs::path(dir.empty() ? "." : dir) / name;
    if (is_executable_file(candidate)) return fs::absolute(candidate).lexically_normal().string();
  }
  return "";
}

// The command to run: $KILN_CXX (must work: the user asked for it), then $CXX, then the usual names.
std::vector<std::string> choose_compiler() {
  if (const char* kiln_cxx = std::getenv("KILN_CXX"); kiln_cxx && *kiln_cxx) {
    auto words = split_words(kiln_cxx);
    std::string program = words.empty() ? "" : find_program(words[0]);
    KILN_USER_CHECK(!program.empty(), "kiln: KILN_CXX=", kiln_cxx,
                    " is not an executable C++ compiler, so kiln cannot build generated code "
                    "(compiled graphs fall back to eager). ",
                    kHowToFix);
    words[0] = program;
    return words;
  }
  std::vector<std::string> tried;
  if (const char* cxx = std::getenv("CXX"); cxx && *cxx) {
    auto words = split_words(cxx);
    if (!words.empty()) {
      if (std::string program = find_program(words[0]); !program.empty()) {
        words[0] = program;
        return words;
      }
    }
    tried.push_back(str_cat("$CXX=", cxx));
  }
  for (const char* name : {"c++", "g++", "clang++"}) {
    if (std::string program = find_program(name); !program.empty()) return {program};
    tried.push_back(name);
  }
  throw UserError(str_cat("kiln: no C++ compiler found (tried ", join(tried, ", "),
                          " on PATH), so kiln cannot build generated code (compiled graphs fall back to eager). ",
                          kHowToFix));
}

// Splits one line of `-###` output into arguments, undoing the driver's double quotes.
std::vector<std::string> split_quoted(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool in_quotes = false, have = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (in_quotes && c == '\\' && i + 1 < line.size()) {
      cur += line[++i];
    } else if (c == '"') {
      in_quotes = !in_quotes;
      have = true;
    } else if (!in_quotes && (c == ' ' || c == '\t')) {
      if (have) out.push_back(cur);
      cur.clear();
      have = false;
    } else {
      cur += c;
      have = true;
    }
  }
  if (have) out.push_back(cur);
  return out;
}

// From the driver's `-###` plan, the compiler proper's target options: for g++ the expanded
// -march=<cpu> -m<feature>... --param <cache sizes>, for clang -target-cpu and -target-feature.
// These decide the generated instructions, so all of them go into the identity, not just the name.
void parse_target(const std::string& plan, Toolchain& tc) {
  std::istringstream lines(plan);
  for (std::string line; std::getline(lines, line);) {
    bool gcc = line.find("cc1plus") != std::string::npos;
    bool clang = line.find("\"-cc1\"") != std::string::npos;
    if (!gcc && !clang) continue;
    std::vector<std::string> args = split_quoted(line), target;
    for (std::size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      bool has_next = i + 1 < args.size();
      if (a.rfind("-march=", 0) == 0) {
        tc.isa = a.substr(7);
        target.push_back(a);
      } else if (a.rfind("-m", 0) == 0) {
        target.push_back(a);
      } else if (has_next && (a == "--param" || a == "-target-feature" || a == "-tune-cpu" || a == "-triple")) {
        target.push_back(a + " " + args[++i]);
      } else if (has_next && a == "-target-cpu") {
        tc.isa = args[++i];
        target.push_back("-target-cpu " + tc.isa);
      }
    }
    tc.target_flags = join(target);
    return;
  }
}

// For a driver whose -### output we cannot read: the predefined macros under -march=native
// (a third, slower subprocess, only on such compilers).
void target_from_macros(Toolchain& tc) {
  Command cmd = tc.command;
  cmd.insert(cmd.end(), {"-march=native", "-dM", "-E", "-x", "c++", "/dev/null"});
  int status = 0;
  std::string out = run_capture(cmd, &status);
  KILN_USER_CHECK(status == 0, "kiln: ", tc.command[0], " cannot compile for -march=native:\n", out, kHowToFix);
  std::vector<std::string> macros;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) macros.push_back(line);
  std::sort(macros.begin(), macros.end());
  tc.target_flags = join(macros, "\n");
  tc.isa = "unknown";
  for (const char* isa : {"__AVX512F__", "__AVX2__", "__AVX__", "__SSE4_2__", "__ARM_FEATURE_SVE", "__ARM_NEON"}) {
    if (out.find(std::string("#define ") + isa + " ") != std::string::npos) {
      tc.isa = str_cat("unknown (", isa, ")");
      break;
    }
  }
}

std::shared_ptr<const Toolchain> detect() {
  auto tc = std::make_shared<Toolchain>();
  tc->command = choose_compiler();
  std::error_code ec;
  tc->real_path = fs::canonical(tc->command[0], ec).string();
  if (ec) tc->real_path = tc->command[0];

  Command cmd = tc->command;
  cmd.push_back("--version");
  int status = 0;
  std::string out = run_capture(cmd, &status);
  KILN_USER_CHECK(status == 0, "kiln: `", shell_quote(cmd), "` failed (exit status ", status, "):\n", out, kHowToFix);
  tc->version = out.substr(0, out.find('\n'));

  // -### prints what the driver would run, without running it: ~2 ms, and it shows -march=native
  // expanded into the CPU name and feature list.
  cmd = tc->command;
  cmd.insert(cmd.end(), {"-march=native", "-###", "-x", "c++", "-c", "/dev/null", "-o", "/dev/null"});
  out = run_capture(cmd, &status);
  KILN_USER_CHECK(status == 0, "kiln: ", tc->command[0], " cannot compile for -march=native (`", shell_quote(cmd),
                  "` exit status ", status, "):\n", out, kHowToFix);
  parse_target(out, *tc);
  if (tc->isa.empty()) target_from_macros(*tc);

  // IEEE semantics: no -ffast-math (masks rely on -inf, NaN must propagate); -fno-math-errno only
  // lets sqrt and friends vectorize, which changes no result.
  // -march=native is the default target; a build for another ISA level replaces it
  // (BuildRequest::target_flags).
  tc->compile_flags = {"-O3", "-march=native", "-std=c++20", "-fPIC", "-fno-math-errno"};
  tc->link_flags = {"-shared"};
  return tc;
}

}  // namespace

std::string Toolchain::identity() const {
  return str_cat("compiler: ", join(command), "\n", "real path: ", real_path, "\n", "version: ", version, "\n",
                 "isa: ", isa, "\n", "target: ", target_flags, "\n", "compile flags: ", join(compile_flags), "\n",
                 "link flags: ", join(link_flags), "\n");
}

std::shared_ptr<const Toolchain> toolchain() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_toolchain) g_toolchain = detect();  // a failure is not cached: the user may fix it and retry
  return g_toolchain;
}

void reset_toolchain_for_testing() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_toolchain.reset();
}

}  // namespace kiln::jit
