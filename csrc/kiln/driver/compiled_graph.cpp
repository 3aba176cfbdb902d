// compiled_graph.cpp — the compile driver (passes → plan → C++ → JIT) and the call path.
#include "kiln/driver/compiled_graph.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kiln/driver/lower.h"
#include "kiln/loops/kernel_plan.h"
#include "kiln/runtime/kiln_runtime.h"
#include "kiln/support/error.h"
#include "kiln/support/hash.h"

#ifndef KILN_BUILD_ID
#define KILN_BUILD_ID "dev"
#endif

namespace kiln {

namespace {

std::mutex g_stats_mu;
DriverStats g_stats;
// Counted on every call: atomics, so a call takes no lock for them.
std::atomic<int64_t> g_calls{0}, g_kernels_run{0};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void write_file(const std::string& dir, const std::string& name, const std::string& text) {
  std::filesystem::create_directories(dir);
  std::ofstream(std::filesystem::path(dir) / name) << text;
}

// Metadata the generated library carries, so a cache hit needs no planning: the arena size and
// the outputs returned as views of inputs.
std::string metadata_text(const Graph& g, const KernelPlan& plan) {
  std::ostringstream os;
  os << "arena " << plan.arena_bytes.str() << "\n";
  os << "kernels " << plan.kernels.size() << "\n";
  for (size_t j = 0; j < plan.output_alias.size(); ++j) {
    const auto& a = plan.output_alias[j];
    if (!a) continue;
    // "i N": a view of graph input N; "o N": a view of graph output N (computed by this call).
    const ValueInfo& base = g.value(a->base);
    bool of_input = base.input >= 0;
    int32_t index = of_input ? base.input : plan.storage[static_cast<size_t>(a->base)].index;
    os << "alias " << j << " " << (of_input ? "i " : "o ") << index << " " << a->offset.str();
    for (const auto& s : a->strides) os << " " << s.str();
    os << "\n";
  }
  for (size_t j = 0; j < plan.in_place_of.size(); ++j)
    if (plan.in_place_of[j] >= 0) os << "inplace " << j << " " << plan.in_place_of[j] << "\n";
  return os.str();
}

std::string c_string_literal(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '\n')
      r += "\\n";
    else if (c == '"' || c == '\\')
      r += std::string("\\") + c;
    else
      r += c;
  }
  return r + "\"";
}

}  // namespace

// The matmul precision is a property of each float matmul node, so it is printed (and keyed) with
// the graph and reaches codegen with the node.
void stamp_matmul_precision(Graph& g, int planes) {
  if (planes <= 0) return;
  for (size_t i = 0; i < g.nodes().size(); ++i) {
    const Node& n = g.nodes()[i];
    if (n.op == Op::matmul && g.type(n.result).dtype == DType::F32)
      g.set_attr(static_cast<int32_t>(i), "bf16_planes", int64_t(planes));
  }
}

std::shared_ptr<CompiledGraph> CompiledGraph::compile(const Graph& imported, const CompileOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  // Generated code calls the runtime kernels of its level: they must load here.
  KILN_USER_CHECK(kiln_kernels_for(opt.target.isa) != nullptr, kiln_last_error());
  auto cg = std::make_shared<CompiledGraph>();
  cg->isa_ = opt.target.isa_name();
  cg->graph_ = imported;
  stamp_matmul_precision(cg->graph_, opt.gemm_bf16_planes);
  std::string imported_text = print_graph(cg->graph_);

  // The key names everything that decides the code, so a warm start can skip every pass.
  std::string alias_bits;
  for (bool b : opt.alias_ok) alias_bits += b ? '1' : '0';
  for (auto [j, i] : opt.in_place_candidates) alias_bits += str_cat(" ", j, ":", i);
  std::string key = sha256_hex(str_cat("kiln-graph-v2\n", KILN_BUILD_ID, "\n", opt.mode, "\n", opt.target.describe(),
                                       alias_bits, "\n", imported_text));

  jit::BuildRequest req;
  req.key = key;
  req.include_dir = opt.include_dir;
  req.lib_dir = opt.lib_dir;
  req.target_flags = opt.target.compiler_flags();
  if (!opt.debug_dir.empty()) {
    req.debug_dir = opt.debug_dir;
    write_file(opt.debug_dir, "00-imported.kir", imported_text);
  }

  // With a debug directory every stage is written even on a cache hit: lowering takes milliseconds,
  // and build_or_load writes the compile command and finds the cached library.
  std::optional<jit::BuildResult> built = opt.debug_dir.empty() ? jit::try_load(req) : std::nullopt;
  if (!built) {
    LowerOptions lo;
    lo.target = opt.target;
    lo.alias_ok = opt.alias_ok;
    lo.in_place_candidates = opt.in_place_candidates;
    lo.verify = opt.verify;
    if (!opt.debug_dir.empty())
      lo.dump = [&](int step, const std::string& name, const std::string& ext, const std::string& text) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%02d-", step);
        write_file(opt.debug_dir, buf + name + "." + ext, text);
      };
    const Lowered lowered = lower(cg->graph_, lo);
    const Graph& optimized = lowered.graph;
    const KernelPlan& plan = lowered.plan;
    cg->times_.passes = lowered.passes_seconds;
    cg->times_.codegen = lowered.emit_seconds;
    std::string source = lowered.cpp;
    source += "\nextern \"C\" const char* kiln_metadata() { return " +
              c_string_literal(metadata_text(optimized, plan)) + "; }\n";
    if (!opt.debug_dir.empty()) {
      write_file(opt.debug_dir, "90-kernels.txt", describe_plan(optimized, plan));
      write_file(opt.debug_dir, "91-generated.cpp", source);
    }
    req.sources = {source};
    built = jit::build_or_load(req);
    cg->times_.compiler = built->compile_seconds;
  }
  cg->times_.cache_hit = built->cache_hit;
  cg->library_ = built->library;
  cg->entry_ = reinterpret_cast<int (*)(void* const*, const int64_t*, char*)>(cg->library_->symbol("kiln_entry"));
  auto meta_fn = reinterpret_cast<const char* (*)()>(cg->library_->symbol("kiln_metadata"));

  // Parse the metadata back (the same text whether just built or loaded from the cache).
  cg->aliases_.assign(imported.outputs().size(), std::nullopt);
  cg->in_place_.assign(imported.outputs().size(), -1);
  std::istringstream meta(meta_fn());
  std::string line;
  while (std::getline(meta, line)) {
    std::istringstream ls(line);
    std::string kind;
    ls >> kind;
    if (kind == "arena") {
      std::string e;
      ls >> e;
      cg->arena_bytes_ = parse_sym_expr(e);
    } else if (kind == "kernels") {
      ls >> cg->num_kernels_;
    } else if (kind == "alias") {
      size_t j;
      OutputAlias a;
      std::string off, st, kind_of_base;
      ls >> j >> kind_of_base >> a.input >> off;
      a.of_output = kind_of_base == "o";
      a.offset = parse_sym_expr(off);
      while (ls >> st) a.strides.push_back(parse_sym_expr(st));
      KILN_CHECK(j < cg->aliases_.size(), "bad alias metadata");
      cg->aliases_[j] = a;
    } else if (kind == "inplace") {
      size_t j;
      int32_t i;
      ls >> j >> i;
      KILN_CHECK(j < cg->in_place_.size(), "bad in-place metadata");
      cg->in_place_[j] = i;
    }
  }
  cg->times_.total = seconds_since(t0);
  {
    std::lock_guard<std::mutex> lock(g_stats_mu);
    g_stats.graphs_compiled += 1;
    g_stats.kernels_compiled += static_cast<int64_t>(cg->num_kernels_);
    g_stats.passes_seconds += cg->times_.passes;
    g_stats.codegen_seconds += cg->times_.codegen;
  }
  return cg;
}

void CompiledGraph::output_layout(size_t j, const std::vector<int64_t>& syms, std::vector<int64_t>& sizes,
                                  std::vector<int64_t>& strides) const {
  SymBindings env;
  for (size_t i = 0; i < graph_.symbols.size(); ++i) env[graph_.symbols[i]] = syms.at(i);
  const GraphOutput& o = graph_.outputs().at(j);
  sizes.clear();
  strides.clear();
  for (const auto& s : graph_.type(o.value).sizes) sizes.push_back(s.eval(env));
  const auto& alias = aliases_.at(j);
  for (const auto& s : alias ? alias->strides : o.strides) strides.push_back(s.eval(env));
}

void CompiledGraph::check_inputs(const std::vector<TensorArg>& inputs, const std::vector<int64_t>& syms) const {
  KILN_USER_CHECK(inputs.size() == graph_.inputs().size(), "kiln: expected ", graph_.inputs().size(),
                  " tensor inputs, got ", inputs.size());
  SymBindings env;
  for (size_t i = 0; i < graph_.symbols.size(); ++i) env[graph_.symbols[i]] = syms.at(i);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const GraphInput& gi = graph_.inputs()[i];
    const TensorType& t = graph_.type(gi.value);
    const TensorArg& a = inputs[i];
    KILN_USER_CHECK(a.dtype == t.dtype, "input ", i, " has dtype ", dtype_name(a.dtype), ", compiled for ",
                    dtype_name(t.dtype));
    KILN_USER_CHECK(a.ndim == t.rank(), "input ", i, " has rank ", a.ndim, ", compiled for ", t.rank());
    for (int64_t d = 0; d < a.ndim; ++d) {
      int64_t want = t.sizes[static_cast<size_t>(d)].eval(env);
      KILN_USER_CHECK(a.sizes[d] == want, "input ", i, " has size ", a.sizes[d], " in dim ", d, ", compiled for ",
                      want);
      // A stride only matters where the dim has more than one element.
      if (want > 1) {
        int64_t ws = gi.strides[static_cast<size_t>(d)].eval(env);
        KILN_USER_CHECK(a.strides[d] == ws, "input ", i, " has stride ", a.strides[d], " in dim ", d,
                        ", but the code was compiled for stride ", ws);
      }
    }
  }
}

CompiledGraph::Arena CompiledGraph::acquire_arena(int64_t bytes) {
  // One caller at a time (the common case) takes the hot arena without a lock.
  if (!hot_taken_.test_and_set(std::memory_order_acquire)) {
    if (hot_.bytes < bytes) {
      std::free(hot_.data);
      hot_ = Arena{};  // nothing dangles if the allocation below throws
      hot_ = new_arena(bytes);
    }
    Arena a = hot_;
    a.hot = true;
    return a;
  }
  {
    std::lock_guard<std::mutex> lock(arenas_mu_);
    for (size_t i = 0; i < free_arenas_.size(); ++i) {
      if (free_arenas_[i].bytes >= bytes) {
        Arena a = free_arenas_[i];
        free_arenas_.erase(free_arenas_.begin() + static_cast<long>(i));
        return a;
      }
    }
  }
  return new_arena(bytes);
}

CompiledGraph::Arena CompiledGraph::new_arena(int64_t bytes) {
  Arena a;
  a.bytes = std::max<int64_t>(bytes, 64);
  a.data = static_cast<char*>(std::aligned_alloc(64, static_cast<size_t>((a.bytes + 63) / 64 * 64)));
  KILN_USER_CHECK(a.data != nullptr, "kiln: out of memory allocating a ", a.bytes, "-byte arena");
  return a;
}

void CompiledGraph::release_arena(Arena a) {
  if (a.hot) {
    hot_ = a;
    hot_.hot = false;
    hot_taken_.clear(std::memory_order_release);
    return;
  }
  std::lock_guard<std::mutex> lock(arenas_mu_);
  // Keep one arena per concurrent caller; drop smaller ones that a larger call outgrew.
  free_arenas_.push_back(a);
}

CompiledGraph::~CompiledGraph() {
  std::free(hot_.data);
  for (auto& a : free_arenas_) std::free(a.data);
}

void CompiledGraph::run(void* const* buffers, const std::vector<int64_t>& syms) {
  int64_t bytes = 0;
  if (arena_bytes_.is_const()) {
    bytes = arena_bytes_.const_value();
  } else {
    SymBindings env;
    for (size_t i = 0; i < graph_.symbols.size(); ++i) env[graph_.symbols[i]] = syms.at(i);
    bytes = arena_bytes_.eval(env);
  }
  int rc = 0;
  if (bytes == 0) {  // nothing lives in the arena
    rc = entry_(buffers, syms.data(), nullptr);
  } else {
    Arena a = acquire_arena(bytes);
    rc = entry_(buffers, syms.data(), a.data);
    release_arena(a);
  }
  g_calls.fetch_add(1, std::memory_order_relaxed);
  g_kernels_run.fetch_add(static_cast<int64_t>(num_kernels_), std::memory_order_relaxed);
  if (rc != 0) throw UserError(str_cat("kiln kernel failed: ", kiln_last_error()));
}

const char* build_id() { return KILN_BUILD_ID; }

DriverStats driver_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mu);
  DriverStats s = g_stats;
  s.calls = g_calls.load(std::memory_order_relaxed);
  s.kernels_run = g_kernels_run.load(std::memory_order_relaxed);
  return s;
}
void reset_driver_stats() {
  std::lock_guard<std::mutex> lock(g_stats_mu);
  g_stats = DriverStats{};
  g_calls.store(0, std::memory_order_relaxed);
  g_kernels_run.store(0, std::memory_order_relaxed);
}

}  // namespace kiln
