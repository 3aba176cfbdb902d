// memory_plan.cpp — arena offsets for intermediates, reusing memory whose value is dead.
#include <algorithm>
#include <set>

#include "kiln/loops/load_trace.h"
#include "kiln/loops/realize.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

constexpr int64_t kAlign = 64;

SymExpr align_up(const SymExpr& bytes) {
  if (bytes.is_const()) return SymExpr((bytes.const_value() + kAlign - 1) / kAlign * kAlign);
  return floordiv(bytes + SymExpr(kAlign - 1), SymExpr(kAlign)) * SymExpr(kAlign);
}

// Realized values each step reads.
std::vector<std::set<ValueId>> step_reads(const Graph& g, const KernelPlan& plan) {
  std::vector<std::set<ValueId>> reads(plan.steps.size());
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    if (st.kind == Step::Kind::Extern) {
      for (int32_t e : st.extern_nodes())
        for (ValueId in : g.node(e).inputs) {
          auto lay = affine_layout(g, plan.realized, plan.storage, in);
          KILN_CHECK(lay.has_value(), "extern operand without a layout");
          reads[i].insert(lay->base);
        }
    }
    if (st.kernel_run() < 0) continue;
    for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel_run())].stages) {
      std::vector<TracedLoad> loads;
      std::vector<SymExpr> coords(s.domain.size(), SymExpr(0));
      if (s.dest_output >= 0)
        loads.push_back({s.value, coords, false});
      else
        trace_node_loads(g, plan.realized, *g.producer(s.value), coords, loads);
      for (const auto& l : loads) reads[i].insert(l.value);
    }
  }
  return reads;
}

}  // namespace

namespace {

// Values read only by the kernel that computes them become per-thread scratch rows.
void localize(const Graph& g, KernelPlan& plan, const std::vector<std::set<ValueId>>& reads) {
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    if (st.kernel_run() < 0) continue;
    for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel_run())].stages) {
      if (s.dest_output >= 0) continue;
      Storage& sto = plan.storage[static_cast<size_t>(s.value)];
      if (sto.kind != Storage::Kind::Arena) continue;
      bool only_here = true;
      for (size_t j = 0; j < reads.size() && only_here; ++j)
        if (j != i && reads[j].count(s.value)) only_here = false;
      if (!only_here) continue;
      // Result coordinates that follow the outer loops get stride 0; the rest are a row.
      const auto& sizes = g.type(s.value).sizes;
      std::vector<bool> outer(sizes.size(), false);
      if (s.reduction) {
        outer.assign(sizes.size(), true);  // one value per outer index
      } else {
        for (size_t k = 0; k < s.outer_dims.size(); ++k) outer[k] = true;
      }
      std::vector<SymExpr> strides(sizes.size(), SymExpr(0));
      SymExpr acc(1);
      for (size_t d = sizes.size(); d-- > 0;) {
        if (outer[d]) continue;
        strides[d] = acc;
        acc = acc * sizes[d];
      }
      sto.kind = Storage::Kind::Local;
      sto.strides = strides;
      sto.offset = acc;  // elements in one row
      sto.kernel = st.kernel_run();
    }
  }
}

}  // namespace

void plan_memory(const Graph& g, KernelPlan& plan) {
  size_t nv = g.num_values();
  std::vector<int64_t> def(nv, -1), last(nv, -1);
  auto reads = step_reads(g, plan);
  localize(g, plan, reads);
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const Step& st = plan.steps[i];
    if (st.kind == Step::Kind::Extern) {
      for (int32_t e : st.extern_nodes()) def[static_cast<size_t>(g.node(e).result)] = static_cast<int64_t>(i);
      auto parts = plan.part_values.find(st.node);
      if (parts != plan.part_values.end())
        for (ValueId v : parts->second)
          if (v >= 0) def[static_cast<size_t>(v)] = static_cast<int64_t>(i);
    }
    // A matmul's epilogue runs during the GEMM: what it writes is born with the GEMM's result, so
    // it never shares memory with an operand the GEMM still reads.
    if (st.kernel_run() >= 0)
      for (const Stage& s : plan.kernels[static_cast<size_t>(st.kernel_run())].stages)
        if (s.dest_output < 0 && def[static_cast<size_t>(s.value)] < 0)
          def[static_cast<size_t>(s.value)] = static_cast<int64_t>(i);
    for (ValueId v : reads[i]) last[static_cast<size_t>(v)] = static_cast<int64_t>(i);
  }

  bool all_static = true;
  std::vector<size_t> arena_values;
  for (size_t v = 0; v < nv; ++v) {
    if (plan.storage[v].kind != Storage::Kind::Arena) continue;
    arena_values.push_back(v);
    SymExpr bytes = g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype));
    all_static = all_static && bytes.is_const();
  }
  if (!all_static) {
    SymExpr top(0);
    for (size_t v : arena_values) {
      plan.storage[v].offset = top;
      top = top + align_up(g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype)));
    }
    plan.arena_bytes = top;
    return;
  }
  // Static sizes: place values in definition order into the lowest free gap that fits.
  struct Block {
    int64_t begin, end, dies;
  };
  std::vector<Block> live;
  int64_t top = 0;
  std::sort(arena_values.begin(), arena_values.end(), [&](size_t a, size_t b) { return def[a] < def[b]; });
  for (size_t v : arena_values) {
    int64_t bytes = align_up(g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype))).const_value();
    int64_t born = def[v], dies = std::max(last[v], def[v]);
    // A block is free for v when its value dies before v is born (strictly: a kernel reading the
    // old value and writing v in the same step must not share memory).
    std::erase_if(live, [&](const Block& b) { return b.dies < born; });
    std::sort(live.begin(), live.end(), [](const Block& a, const Block& b) { return a.begin < b.begin; });
    int64_t at = 0;
    for (const Block& b : live) {
      if (b.begin - at >= bytes) break;
      at = std::max(at, b.end);
    }
    plan.storage[v].offset = SymExpr(at);
    live.push_back({at, at + bytes, dies});
    top = std::max(top, at + bytes);
  }
  plan.arena_bytes = SymExpr(top);
}

}  // namespace kiln
