// jit_cache_test.cpp — the JIT end to end: compile, load, call, disk cache, corruption, keys, errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "kiln/jit/compiler.h"
#include "kiln/jit/disk_cache.h"
#include "kiln/jit/jit.h"
#include "kiln/jit/toolchain.h"
#include "kiln/support/error.h"
#include "kiln/support/hash.h"

#ifndef KILN_SOURCE_DIR
#error "KILN_SOURCE_DIR must name the repository root"
#endif

namespace kiln::jit {
namespace {

namespace fs = std::filesystem;

constexpr const char* kAddSource = "extern \"C\" int f(int x) { return 2 * x + 1; }\n";
using IntFn = int (*)(int);

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// Sets an environment variable for one test and puts the old value back afterwards.
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~EnvGuard() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Each test gets its own cache directory (via KILN_CACHE_DIR) and a unique request key.
class JitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kiln-jit-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cache_env_.emplace("KILN_CACHE_DIR", (root_ + "/cache").c_str());
  }
  void TearDown() override {
    cache_env_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  BuildRequest request(std::vector<std::string> sources) const {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    BuildRequest r;
    r.sources = std::move(sources);
    r.key = sha256_hex(std::string(info->test_suite_name()) + "." + info->name() + "/" + root_);
    r.include_dir = KILN_SOURCE_DIR "/csrc";
    r.link_runtime = false;
    return r;
  }

  static int call_f(const BuildResult& result, int x) {
    return reinterpret_cast<IntFn>(result.library->symbol("f"))(x);
  }

  std::string root_;
  std::optional<EnvGuard> cache_env_;
};

TEST_F(JitTest, JitBuildCompilesLoadsAndCalls) {
  BuildResult result = build_or_load(request({kAddSource}));
  EXPECT_FALSE(result.cache_hit);
  EXPECT_GT(result.compile_seconds, 0);
  EXPECT_EQ(call_f(result, 20), 41);
  EXPECT_EQ(fs::path(result.so_path).parent_path(), fs::path(root_ + "/cache"));
  EXPECT_EQ(read_file(result.so_path.substr(0, result.so_path.size() - 3) + ".sha256"),
            sha256_hex(read_file(result.so_path)) + "\n");
  EXPECT_TRUE(fs::is_empty(root_ + "/cache/tmp"));  // the build directory is cleaned up
}

TEST_F(JitTest, JitBuildSecondCallIsACacheHitAndCompilesNothing) {
  const BuildRequest req = request({kAddSource});
  {
    EXPECT_FALSE(build_or_load(req).cache_hit);
  }  // dropped: the library is unloaded
  const JitStats before = stats();
  BuildResult second = build_or_load(req);
  EXPECT_TRUE(second.cache_hit);
  EXPECT_EQ(second.compile_seconds, 0);
  EXPECT_EQ(call_f(second, 1), 3);
  EXPECT_EQ(stats().compiles, before.compiles);
  EXPECT_EQ(stats().disk_hits, before.disk_hits + 1);

  // While it is loaded, a third call is answered from memory with the same library.
  BuildResult third = build_or_load(req);
  EXPECT_TRUE(third.cache_hit);
  EXPECT_EQ(third.library, second.library);
  EXPECT_EQ(stats().memory_hits, before.memory_hits + 1);
}

TEST_F(JitTest, JitBuildTryLoadNeverCompiles) {
  BuildRequest req = request({kAddSource});
  const auto compiles = stats().compiles;
  EXPECT_FALSE(try_load(req).has_value());
  EXPECT_EQ(stats().compiles, compiles);
  BuildResult built = build_or_load(req);
  req.sources.clear();  // a warm start has no sources yet
  std::optional<BuildResult> loaded = try_load(req);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(loaded->cache_hit);
  EXPECT_EQ(call_f(*loaded, 5), 11);
}

TEST_F(JitTest, JitBuildTwoTranslationUnitsLinkIntoOneLibrary) {
  BuildRequest req = request({"int twice(int x) { return 2 * x; }\n",
                              "int twice(int);\nextern \"C\" int f(int x) { return twice(x) + 1; }\n"});
  req.debug_dir = root_ + "/debug";
  BuildResult result = build_or_load(req);
  EXPECT_EQ(call_f(result, 4), 9);
  for (const char* name : {"tu0.cpp", "tu1.cpp", "tu0.o", "tu1.o", "build.sh", "compile.log", "cache_key.txt"}) {
    EXPECT_TRUE(fs::exists(req.debug_dir + "/" + name)) << name;
  }
  // Two compiles and a link, each logged with its exact command.
  const std::string log = read_file(req.debug_dir + "/compile.log");
  EXPECT_NE(log.find("-c tu0.cpp -o tu0.o"), std::string::npos) << log;
  EXPECT_NE(log.find("-c tu1.cpp -o tu1.o"), std::string::npos) << log;
  EXPECT_NE(log.find("tu0.o tu1.o -o graph.so"), std::string::npos) << log;
}

TEST_F(JitTest, JitDebugDirBuildScriptReproducesTheBuild) {
  BuildRequest req = request({kAddSource});
  req.debug_dir = root_ + "/debug";
  build_or_load(req);
  fs::remove(req.debug_dir + "/graph.so");
  EXPECT_EQ(run_to_file({"/bin/sh", "build.sh"}, root_ + "/rerun.log", req.debug_dir), 0)
      << read_file(root_ + "/rerun.log");
  EXPECT_TRUE(fs::exists(req.debug_dir + "/graph.so"));
  const std::string flags = read_file(req.debug_dir + "/build.sh");
  EXPECT_NE(flags.find("-O3 -march=native -std=c++20 -fPIC -fno-math-errno"), std::string::npos) << flags;
  EXPECT_EQ(flags.find("fast-math"), std::string::npos);
}

// Every way an entry can go bad is a miss that rebuilds, never a crash.
TEST_F(JitTest, JitCacheCorruptEntryIsRebuilt) {
  const BuildRequest req = request({kAddSource});
  const std::string so = build_or_load(req).so_path;
  const std::string hash = so.substr(0, so.size() - 3) + ".sha256";
  const std::vector<std::pair<const char*, std::function<void()>>> corruptions = {
      {"truncate to 100 bytes", [&] { fs::resize_file(so, 100); }},
      {"truncate to 0 bytes", [&] { fs::resize_file(so, 0); }},
      {"flip bytes",
       [&] {
         std::string bytes = read_file(so);
         for (std::size_t i = bytes.size() / 2; i < bytes.size() / 2 + 16; ++i) bytes[i] = char(~bytes[i]);
         write_file(so, bytes);
       }},
      {"not an ELF file", [&] { write_file(so, std::string(4096, 'x')); }},
      {"hash file missing", [&] { fs::remove(hash); }},
      {"hash file wrong", [&] { write_file(hash, std::string(64, '0') + "\n"); }},
      {"a directory in its place",
       [&] {
         fs::remove(so);
         fs::create_directory(so);
       }},
  };
  for (const auto& [what, corrupt] : corruptions) {
    corrupt();
    const JitStats before = stats();
    BuildResult rebuilt = build_or_load(req);
    EXPECT_FALSE(rebuilt.cache_hit) << what;
    EXPECT_EQ(call_f(rebuilt, 2), 5) << what;
    EXPECT_EQ(stats().compiles, before.compiles + 1) << what;
    EXPECT_EQ(stats().bad_entries, before.bad_entries + 1) << what;
  }
  // A hash that matches garbage still fails the ELF check.
  write_file(so, std::string(4096, 'x'));
  write_file(hash, sha256_hex(std::string(4096, 'x')) + "\n");
  EXPECT_FALSE(build_or_load(req).cache_hit);
  EXPECT_TRUE(build_or_load(req).cache_hit);
}

TEST_F(JitTest, JitCacheBlobRoundTripsAndRejectsCorruption) {
  const DiskCache cache(cache_dir());
  const std::string key = sha256_hex("blob/" + root_);
  EXPECT_FALSE(cache.load_blob(key).has_value());  // absent: a plain miss
  const std::string payload = std::string("pickled\0graph\nwith newlines", 28);
  cache.store_blob(key, payload);
  ASSERT_TRUE(cache.load_blob(key).has_value());
  EXPECT_EQ(*cache.load_blob(key), payload);
  const std::string path = cache.dir() + "/" + key + ".blob";
  const std::vector<std::pair<const char*, std::function<void()>>> corruptions = {
      {"flip a payload byte",
       [&] {
         std::string bytes = read_file(path);
         bytes.back() = char(~bytes.back());
         write_file(path, bytes);
       }},
      {"truncated", [&] { fs::resize_file(path, 10); }},
      {"empty", [&] { fs::resize_file(path, 0); }},
  };
  for (const auto& [what, corrupt] : corruptions) {
    cache.store_blob(key, payload);
    corrupt();
    bool bad = false;
    EXPECT_FALSE(cache.load_blob(key, &bad).has_value()) << what;
    EXPECT_TRUE(bad) << what;
    EXPECT_FALSE(fs::exists(path)) << what;  // deleted, so the next store starts clean
  }
}

TEST_F(JitTest, JitCacheLeavesNoTempFilesBehind) {
  build_or_load(request({kAddSource}));
  for (const auto& entry : fs::directory_iterator(root_ + "/cache")) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
  }
}

TEST_F(JitTest, JitKeyIsStableAndNamesEveryInput) {
  const BuildRequest base = request({kAddSource});
  const std::string key = cache_key(base);
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(cache_key(base), key);

  BuildRequest other = base;
  other.sources = {"extern \"C\" int f(int x) { return x; }\n"};
  EXPECT_EQ(cache_key(other), key) << "sources are named by request.key, not hashed again";

  other = base;
  other.key = sha256_hex("something else");
  EXPECT_NE(cache_key(other), key);

  other = base;
  other.link_runtime = true;
  other.lib_dir = root_ + "/lib";
  const std::string linked = cache_key(other);
  EXPECT_NE(linked, key);
  other.lib_dir = root_ + "/lib2";
  EXPECT_NE(cache_key(other), linked);

  // The runtime header's contents are part of the key.
  const std::string include = root_ + "/include";
  fs::create_directories(include + "/kiln/runtime");
  const std::string header = read_file(KILN_SOURCE_DIR "/csrc/kiln/runtime/kiln_runtime.h");
  write_file(include + "/kiln/runtime/kiln_runtime.h", header);
  other = base;
  other.include_dir = include;
  const std::string copied = cache_key(other);
  EXPECT_EQ(cache_key(other), copied);
  write_file(include + "/kiln/runtime/kiln_runtime.h", header + "\nvoid kiln_new_function(void);\n");
  const std::string changed = cache_key(other);
  EXPECT_NE(changed, copied);
  // ...and so are the inline helpers beside it that generated code includes.
  write_file(include + "/kiln/runtime/kiln_prelude.h", "inline int kiln_helper() { return 1; }\n");
  const std::string with_prelude = cache_key(other);
  EXPECT_NE(with_prelude, changed);
  write_file(include + "/kiln/runtime/kiln_prelude.h", "inline int kiln_helper() { return 2; }\n");
  EXPECT_NE(cache_key(other), with_prelude);
  fs::remove(include + "/kiln/runtime/kiln_runtime.h");
  EXPECT_THROW(cache_key(other), UserError) << "a missing runtime header is an incomplete install";

  // So is the compiler: the same g++ under another path is another identity.
  const std::string cxx = toolchain()->command[0];
  fs::create_symlink(cxx, root_ + "/my-c++");
  {
    EnvGuard env("KILN_CXX", (root_ + "/my-c++").c_str());
    reset_toolchain_for_testing();
    EXPECT_NE(cache_key(base), key);
  }
  reset_toolchain_for_testing();
  EXPECT_EQ(cache_key(base), key);
}

TEST_F(JitTest, JitToolchainIdentityNamesCompilerAndTarget) {
  auto tc = toolchain();
  EXPECT_TRUE(fs::path(tc->command[0]).is_absolute());
  EXPECT_FALSE(tc->version.empty());
  EXPECT_FALSE(tc->isa.empty());
  EXPECT_FALSE(tc->target_flags.empty());
  const std::string id = tc->identity();
  EXPECT_NE(id.find(tc->version), std::string::npos);
  EXPECT_NE(id.find(tc->isa), std::string::npos);
  EXPECT_NE(id.find("-march=native"), std::string::npos);
  EXPECT_EQ(id.find("fast-math"), std::string::npos);
  EXPECT_EQ(toolchain(), tc) << "detected once per process";
}

TEST_F(JitTest, JitErrorSyntaxErrorIsAUserErrorWithTheCompilerMessage) {
  const BuildRequest req = request({"extern \"C\" int f(int x) { return x +; }\n"});
  try {
    build_or_load(req);
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("tu0.cpp:1:"), std::string::npos) << msg;
    EXPECT_NE(msg.find("error"), std::string::npos) << msg;
    EXPECT_NE(msg.find("eagerly"), std::string::npos) << msg;
    EXPECT_NE(msg.find("-march=native"), std::string::npos) << msg;  // the command
    const std::string log = root_ + "/cache/failed/" + cache_key(req) + "/compile.log";
    EXPECT_NE(msg.find(log), std::string::npos) << msg;
    EXPECT_NE(read_file(log).find("error"), std::string::npos);
  }
  EXPECT_FALSE(try_load(req).has_value());
}

TEST_F(JitTest, JitErrorMissingCompilerIsAClearUserError) {
  {
    EnvGuard env("KILN_CXX", "/nonexistent/c++");
    reset_toolchain_for_testing();
    try {
      build_or_load(request({kAddSource}));
      FAIL() << "expected a UserError";
    } catch (const UserError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("KILN_CXX=/nonexistent/c++"), std::string::npos) << msg;
      EXPECT_NE(msg.find("install g++"), std::string::npos) << msg;
      EXPECT_NE(msg.find("set KILN_CXX=/path/to/c++"), std::string::npos) << msg;
    }
  }
  {  // Nothing on PATH either.
    EnvGuard kiln_cxx("KILN_CXX", nullptr), cxx("CXX", nullptr), path("PATH", root_.c_str());
    reset_toolchain_for_testing();
    try {
      toolchain();
      FAIL() << "expected a UserError";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("no C++ compiler found"), std::string::npos) << e.what();
    }
  }
  reset_toolchain_for_testing();
  EXPECT_NO_THROW(toolchain());
}

TEST_F(JitTest, JitCacheDirIsCreatedPrivate) {
  const std::string dir = root_ + "/a/b/kiln";
  EnvGuard env("KILN_CACHE_DIR", dir.c_str());
  const mode_t old_umask = ::umask(0);  // a permissive umask must not widen it
  const std::string resolved = cache_dir();
  ::umask(old_umask);
  EXPECT_EQ(resolved, dir);
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((root_ + "/a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(JitTest, JitCacheDirFollowsXdgCacheHome) {
  EnvGuard kiln("KILN_CACHE_DIR", nullptr), xdg("XDG_CACHE_HOME", (root_ + "/xdg").c_str());
  EXPECT_EQ(cache_dir(), root_ + "/xdg/kiln");
}

TEST_F(JitTest, JitCacheDirRefusesGroupWritable) {
  const std::string dir = root_ + "/shared";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0770), 0);
  EnvGuard env("KILN_CACHE_DIR", dir.c_str());
  try {
    cache_dir();
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("chmod 700"), std::string::npos) << e.what();
  }
  EXPECT_THROW(build_or_load(request({kAddSource})), UserError);
}

TEST_F(JitTest, JitCacheDirRefusesAnotherUsersDirectory) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a directory to someone else";
  const std::string dir = root_ + "/theirs";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chown(dir.c_str(), 65534, 65534), 0);
  EnvGuard env("KILN_CACHE_DIR", dir.c_str());
  EXPECT_THROW(cache_dir(), UserError);
}

TEST_F(JitTest, JitConcurrentThreadsShareOneBuild) {
  const BuildRequest req = request({kAddSource});
  const auto compiles = stats().compiles;
  std::vector<BuildResult> results(4);
  std::vector<std::thread> threads;
  for (auto& r : results) threads.emplace_back([&] { r = build_or_load(req); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(stats().compiles, compiles + 1);
  for (const auto& r : results) EXPECT_EQ(r.library, results[0].library);
}

// Processes that build one key at the same moment each rename a complete file into place.
TEST_F(JitTest, JitConcurrentProcessesDoNotCorruptTheCache) {
  const BuildRequest req = request({kAddSource});
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::vector<pid_t> children;
  for (int i = 0; i < 3; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(go[1]);
      char c;
      (void)!::read(go[0], &c, 1);  // wait until every child exists, then race
      int code = 1;
      try {
        code = call_f(build_or_load(req), 3) == 7 ? 0 : 2;
      } catch (...) {
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);  // EOF releases them all at once
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  BuildResult result = build_or_load(req);
  EXPECT_TRUE(result.cache_hit);
  EXPECT_EQ(call_f(result, 3), 7);
}

// Generated code includes kiln_runtime.h and links -lkiln_runtime; here a stub library stands in.
TEST_F(JitTest, JitRuntimeHeaderAndLibraryAreFound) {
  const std::string lib_dir = root_ + "/lib";
  fs::create_directories(lib_dir);
  write_file(root_ + "/stub.cpp",
             "#include \"kiln/runtime/kiln_runtime.h\"\n"
             "static const char* last = \"\";\n"
             "extern \"C\" void kiln_set_error(const char* m) { last = m; }\n"
             "extern \"C\" const char* kiln_last_error(void) { return last; }\n");
  Command cmd = toolchain()->command;
  cmd.insert(cmd.end(), {"-shared", "-fPIC", "-I" KILN_SOURCE_DIR "/csrc", root_ + "/stub.cpp", "-o",
                         lib_dir + "/libkiln_runtime.so"});
  int status = -1;
  const std::string out = run_capture(cmd, &status);
  ASSERT_EQ(status, 0) << out;

  BuildRequest req =
      request({"#include \"kiln/runtime/kiln_runtime.h\"\n"
               "extern \"C\" const char* g() { kiln_set_error(\"boom\"); return kiln_last_error(); }\n"});
  req.link_runtime = true;
  req.lib_dir = lib_dir;
  BuildResult result = build_or_load(req);
  auto g = reinterpret_cast<const char* (*)()>(result.library->symbol("g"));
  EXPECT_STREQ(g(), "boom");
}

TEST_F(JitTest, JitLibraryMissingSymbolIsAnInternalError) {
  BuildResult result = build_or_load(request({kAddSource}));
  EXPECT_EQ(result.library->find_symbol("no_such_symbol"), nullptr);
  EXPECT_THROW(result.library->symbol("no_such_symbol"), InternalError);
  EXPECT_THROW(Library(root_ + "/missing.so"), UserError);
}

}  // namespace
}  // namespace kiln::jit
