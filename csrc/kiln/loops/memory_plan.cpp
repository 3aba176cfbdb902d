// memory_plan.cpp — arena offsets for intermediates, reusing memory whose value is dead.
#include <algorithm>
#include <set>

#include "kiln/loops/load_trace.h"
#include "kiln/loops/realize.h"
#include "kiln/loops/step_reads.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

constexpr int64_t kAlign = 64;

SymExpr align_up(const SymExpr& bytes) {
  if (bytes.is_const()) return SymExpr((bytes.const_value() + kAlign - 1) / kAlign * kAlign);
  return floordiv(bytes + SymExpr(kAlign - 1), SymExpr(kAlign)) * SymExpr(kAlign);
}

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
  auto reads = step_reads(g, plan);
  localize(g, plan, reads);
  const StepLiveness live_range = step_liveness(g, plan, reads);
  const std::vector<int64_t>& def = live_range.def;
  const std::vector<int64_t>& last = live_range.last;

  bool all_static = true;
  std::vector<size_t> arena_values;
  for (size_t v = 0; v < nv; ++v) {
    if (plan.storage[v].kind != Storage::Kind::Arena) continue;
    arena_values.push_back(v);
    SymExpr bytes =
        g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype));
    all_static = all_static && bytes.is_const();
  }
  if (!all_static) {
    SymExpr top(0);
    for (size_t v : arena_values) {
      plan.storage[v].offset = top;
      top = top + align_up(g.type(static_cast<ValueId>(v)).numel() *
                           SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype)));
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
    int64_t bytes =
        align_up(g.type(static_cast<ValueId>(v)).numel() * SymExpr(dtype_size(g.type(static_cast<ValueId>(v)).dtype)))
            .const_value();
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
