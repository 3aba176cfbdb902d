// fusion.cpp — groups realized values into kernels that share an outer loop nest.
//
// A kernel runs, for each outer index, every member stage's inner loops in order: a softmax row
// computes its max, its sum and its outputs while the row is hot in cache. A stage may join the
// current kernel when its outer sizes match and every value it reads from an earlier member is
// read at the same outer index (so that row is complete when it is read).
#include <algorithm>

#include "kiln/loops/extern_parts.h"
#include "kiln/loops/load_trace.h"
#include "kiln/loops/realize.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

std::string outer_var(size_t k) { return "o" + std::to_string(k); }
std::string inner_var(size_t k) { return "i" + std::to_string(k); }

// How a stage's domain dims split into outer and inner loops for a kernel with `outer` sizes.
std::optional<Stage> fit_stage(const Graph& g, ValueId v, int32_t dest_output, const std::vector<SymExpr>& outer) {
  const Node* n = g.producer(v);
  Stage s;
  s.value = v;
  s.dest_output = dest_output;
  if (n && op_kind(n->op) == OpKind::Reduction && dest_output < 0) {
    s.reduction = true;
    s.domain = g.type(n->inputs[0]).sizes;
    const auto& dims = n->attr_ints("dims");
    std::vector<SymExpr> kept;
    for (int64_t d = 0; d < static_cast<int64_t>(s.domain.size()); ++d) {
      if (std::find(dims.begin(), dims.end(), d) != dims.end()) {
        s.inner_dims.push_back(d);
      } else {
        s.outer_dims.push_back(d);
        kept.push_back(s.domain[static_cast<size_t>(d)]);
      }
    }
    if (kept != outer) return std::nullopt;
    return s;
  }
  s.domain = g.type(v).sizes;
  if (outer.size() > s.domain.size()) return std::nullopt;
  for (size_t d = 0; d < s.domain.size(); ++d) {
    if (d < outer.size()) {
      if (s.domain[d] != outer[d]) return std::nullopt;
      s.outer_dims.push_back(static_cast<int64_t>(d));
    } else {
      s.inner_dims.push_back(static_cast<int64_t>(d));
    }
  }
  return s;
}

// Positions of a stage's result coordinates that follow the kernel's outer loops.
std::vector<size_t> result_outer_positions(const Graph& g, const Stage& s) {
  std::vector<size_t> pos;
  if (!s.reduction) {
    for (size_t k = 0; k < s.outer_dims.size(); ++k) pos.push_back(k);
    return pos;
  }
  const Node* n = g.producer(s.value);
  bool keep = n->attr_bool("keepdim");
  size_t r = 0;
  const auto& dims = n->attr_ints("dims");
  for (int64_t d = 0; d < static_cast<int64_t>(s.domain.size()); ++d) {
    bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!reduced) pos.push_back(r);
    if (!reduced || keep) ++r;
  }
  return pos;
}

// Every load of a value computed by an earlier member must be at this outer index.
bool loads_are_row_local(const Graph& g, const KernelPlan& plan, const std::vector<Stage>& members, const Stage& s) {
  std::vector<TracedLoad> loads;
  stage_loads(g, plan, s, loads);
  for (const auto& l : loads) {
    for (const Stage& m : members) {
      if (m.value != l.value || m.dest_output >= 0) continue;
      if (l.data_dependent) return false;
      auto pos = result_outer_positions(g, m);
      for (size_t k = 0; k < pos.size(); ++k)
        if (l.coords[pos[k]] != SymExpr::symbol(outer_var(k))) return false;
    }
  }
  return true;
}

struct OpenKernel {
  std::vector<std::pair<ValueId, int32_t>> items;  // (value, dest_output)
  std::optional<std::vector<SymExpr>> outer;       // fixed once a reduction joins
  std::vector<SymExpr> flexible_sizes;             // all-pointwise kernels: their common sizes
};

// Pointwise kernels loop over trailing dims inside and split the rest across threads. The inner
// loops take the last dim and then, while it is short (an interleaved pair, a head of 16), the dims
// before it: a loop of a few iterations neither vectorizes nor pays for the outer index arithmetic.
// Dims stay outer while the inner work is long enough, and at least one stays outer (threads split
// it); a 1-D kernel's one dim is outer.
constexpr int64_t kMinInnerWork = 64;

std::vector<SymExpr> default_outer(const std::vector<SymExpr>& sizes) {
  if (sizes.empty()) return {};
  if (sizes.size() == 1) return sizes;
  size_t split = sizes.size() - 1;  // sizes[split:] are inner
  auto size_of = [&](size_t d) { return std::max<int64_t>(sizes[d].const_value(), 1); };
  if (!sizes[split].is_const()) return std::vector<SymExpr>(sizes.begin(), sizes.end() - 1);
  for (int64_t inner = size_of(split); inner < kMinInnerWork && split > 1 && sizes[split - 1].is_const();)
    inner *= size_of(--split);
  return std::vector<SymExpr>(sizes.begin(), sizes.begin() + static_cast<std::ptrdiff_t>(split));
}

// The members of `k` plus (v, dest) fitted to `outer`, or nullopt if any does not fit.
std::optional<std::vector<Stage>> fit_all(const Graph& g, const KernelPlan& plan, const OpenKernel& k,
                                          std::pair<ValueId, int32_t> extra, const std::vector<SymExpr>& outer) {
  std::vector<Stage> stages;
  auto items = k.items;
  items.push_back(extra);
  for (auto [v, dest] : items) {
    auto s = fit_stage(g, v, dest, outer);
    if (!s || !loads_are_row_local(g, plan, stages, *s)) return std::nullopt;
    stages.push_back(*s);
  }
  return stages;
}

bool is_reduction_stage(const Graph& g, ValueId v, int32_t dest) {
  const Node* n = g.producer(v);
  return dest < 0 && n && op_kind(n->op) == OpKind::Reduction;
}

std::vector<SymExpr> kept_sizes(const Graph& g, ValueId v) {
  const Node* n = g.producer(v);
  const auto& dims = n->attr_ints("dims");
  const auto& in = g.type(n->inputs[0]).sizes;
  std::vector<SymExpr> kept;
  for (int64_t d = 0; d < static_cast<int64_t>(in.size()); ++d)
    if (std::find(dims.begin(), dims.end(), d) == dims.end()) kept.push_back(in[static_cast<size_t>(d)]);
  return kept;
}

}  // namespace

std::vector<SymExpr> stage_domain_coords(const Stage& s) {
  std::vector<SymExpr> c(s.domain.size());
  for (size_t k = 0; k < s.outer_dims.size(); ++k)
    c[static_cast<size_t>(s.outer_dims[k])] = SymExpr::symbol(outer_var(k));
  for (size_t k = 0; k < s.inner_dims.size(); ++k)
    c[static_cast<size_t>(s.inner_dims[k])] = SymExpr::symbol(inner_var(k));
  return c;
}

void stage_loads(const Graph& g, const KernelPlan& plan, const Stage& s, std::vector<TracedLoad>& out) {
  auto coords = stage_domain_coords(s);
  if (s.dest_output >= 0) {
    out.push_back({s.value, coords, false});
    return;
  }
  const Node* n = g.producer(s.value);
  KILN_CHECK(n != nullptr, "a stage must compute a node's value");
  trace_node_loads(g, plan.realized, *n, coords, out);
}

// The order nodes are grouped in: the graph's, except that extern calls wait until a kernel stage
// needs the result of one of them, and then all run, in their order. Stages that need none of them
// join the kernel open before them (SwiGLU's backward computes the gradients of both projections in
// one pass instead of two passes around the first projection's weight-gradient GEMMs), and a run of
// externs stays together (the Q, K and V projections before one rotary-embedding kernel).
static std::vector<size_t> grouping_order(const Graph& g, const KernelPlan& plan) {
  const size_t nn = g.nodes().size(), nv = g.num_values();
  std::vector<bool> pending_result(nv, false);
  std::vector<size_t> order, pending;
  std::vector<int64_t> seen(nv, -1);
  for (size_t i = 0; i < nn; ++i) {
    const Node& n = g.nodes()[i];
    const size_t v = static_cast<size_t>(n.result);
    if (!plan.realized[v] || (!plan.written_by.empty() && plan.written_by[v] >= 0)) continue;
    if (op_kind(n.op) == OpKind::Extern) {
      pending.push_back(i);
      pending_result[v] = true;
      continue;
    }
    // Whether this stage reads a pending extern's result, through the values it inlines.
    bool needs = false;
    std::vector<ValueId> todo(n.inputs.begin(), n.inputs.end());
    while (!todo.empty() && !needs && !pending.empty()) {
      const size_t u = static_cast<size_t>(todo.back());
      todo.pop_back();
      if (seen[u] == static_cast<int64_t>(i)) continue;
      seen[u] = static_cast<int64_t>(i);
      const bool written = !plan.written_by.empty() && plan.written_by[u] >= 0;
      if (pending_result[u] ||
          (written && pending_result[static_cast<size_t>(g.nodes()[static_cast<size_t>(plan.written_by[u])].result)]))
        needs = true;
      else if (const Node* p = g.producer(static_cast<ValueId>(u)); p && !plan.realized[u] && !written)
        todo.insert(todo.end(), p->inputs.begin(), p->inputs.end());
    }
    if (needs) {
      order.insert(order.end(), pending.begin(), pending.end());
      for (size_t e : pending) pending_result[static_cast<size_t>(g.nodes()[e].result)] = false;
      pending.clear();
    }
    order.push_back(i);
  }
  order.insert(order.end(), pending.begin(), pending.end());
  return order;
}

void group_into_kernels(const Graph& g, KernelPlan& plan) {
  plan.kernels.clear();
  plan.steps.clear();
  // `scalars` collects 0-d stages that need nothing from the open kernel: they run just before it,
  // so the open kernel stays open across them. An optimizer's bias corrections (scalars of the step
  // count) then no longer split each parameter's update in two: m, v and p are one pass.
  OpenKernel open, scalars;
  auto emit = [&](OpenKernel& ok) {
    if (ok.items.empty()) return;
    std::vector<SymExpr> outer = ok.outer ? *ok.outer : default_outer(ok.flexible_sizes);
    auto stages =
        fit_all(g, plan, OpenKernel{{ok.items.begin(), ok.items.end() - 1}, ok.outer, {}}, ok.items.back(), outer);
    KILN_CHECK(stages.has_value(), "a kernel that was accepted no longer fits");
    Kernel k;
    k.name = "kernel_" + std::to_string(plan.kernels.size());
    k.outer = outer;
    k.stages = std::move(*stages);
    plan.steps.push_back({Step::Kind::Kernel, static_cast<int32_t>(plan.kernels.size()), -1});
    plan.kernels.push_back(std::move(k));
    ok = OpenKernel{};
  };
  auto close = [&] {
    emit(scalars);
    emit(open);
  };
  auto reads_open = [&](ValueId v, int32_t dest) {
    const auto s = fit_stage(g, v, dest, {});
    if (!s) return true;
    std::vector<TracedLoad> loads;
    stage_loads(g, plan, *s, loads);
    for (const TracedLoad& l : loads)
      for (const auto& item : open.items)
        if (item.first == l.value) return true;
    return false;
  };
  auto add = [&](ValueId v, int32_t dest) {
    bool red = is_reduction_stage(g, v, dest);
    const auto& sizes = g.type(v).sizes;
    if (!open.items.empty()) {
      std::optional<std::vector<SymExpr>> outer;
      bool stays_flexible = false;
      if (open.outer) {
        outer = open.outer;
      } else if (red) {
        outer = kept_sizes(g, v);
      } else if (sizes == open.flexible_sizes) {
        outer = default_outer(sizes);
        stays_flexible = true;
      }
      if (outer) {
        auto fits = fit_all(g, plan, open, {v, dest}, *outer);
        if (fits) {
          open.items.push_back({v, dest});
          if (!stays_flexible) open.outer = outer;
          return;
        }
      }
      if (dest < 0 && sizes.empty() && !reads_open(v, dest) &&
          (scalars.items.empty() || fit_all(g, plan, scalars, {v, dest}, {}))) {
        scalars.items.push_back({v, dest});
        scalars.outer = std::vector<SymExpr>{};
        return;
      }
      close();
    }
    open.items.push_back({v, dest});
    if (red)
      open.outer = kept_sizes(g, v);
    else
      open.flexible_sizes = sizes;
  };

  for (size_t i : grouping_order(g, plan)) {
    const Node& n = g.nodes()[i];
    if (op_kind(n.op) == OpKind::Extern) {
      close();
      plan.steps.push_back({Step::Kind::Extern, -1, static_cast<int32_t>(i)});
      continue;
    }
    add(n.result, -1);
  }
  // Outputs whose value already lives elsewhere (an input, or another output) get a copy.
  for (size_t j = 0; j < g.outputs().size(); ++j) {
    if (plan.output_alias[j] || plan.output_through[j] >= 0) continue;
    ValueId v = g.outputs()[j].value;
    const Storage& s = plan.storage[static_cast<size_t>(v)];
    if (s.kind == Storage::Kind::Output && s.index == static_cast<int32_t>(j)) continue;
    add(v, static_cast<int32_t>(j));
  }
  close();
}

std::string describe_plan(const Graph& g, const KernelPlan& plan) {
  std::string s;
  size_t nk = 0, ne = 0;
  for (const Step& st : plan.steps) {
    if (st.kind == Step::Kind::Extern) {
      const Node& n = g.node(st.node);
      s += str_cat("extern ", op_name(n.op), " ->");
      for (int32_t e : st.extern_nodes()) {
        const ValueId r = g.node(e).result;
        s += str_cat(e == st.node ? " %" : " + %", r);
        const Storage& rs = plan.storage[static_cast<size_t>(r)];
        if (rs.kind == Storage::Kind::Output) s += str_cat(" (out", rs.index, ")");
      }
      if (st.siblings_share_b) s += " [shared B]";
      auto parts = plan.part_values.find(st.node);
      if (parts != plan.part_values.end()) {
        s += " parts:";
        for (ValueId v : parts->second) s += v >= 0 ? str_cat(" %", v) : std::string(" flat");
      }
      ++ne;
      if (st.epilogue < 0) {
        s += "\n";
        continue;
      }
      s += " rows then ";
    }
    const Kernel& k = plan.kernels[static_cast<size_t>(st.kernel_run())];
    s += str_cat(k.name, " outer=", to_string(k.outer), k.lanes > 0 ? str_cat(" lanes=", k.lanes) : "", ":");
    for (const Stage& stg : k.stages) {
      if (stg.dest_output >= 0)
        s += str_cat(" copy(%", stg.value, "->out", stg.dest_output, ")");
      else
        s += str_cat(" ", stg.reduction ? "reduce" : "map", "(%", stg.value, ")");
    }
    s += "\n";
    ++nk;
  }
  for (size_t j = 0; j < plan.output_alias.size(); ++j)
    if (plan.output_alias[j]) s += str_cat("alias out", j, " = view of %", plan.output_alias[j]->base, "\n");
  return str_cat("kernels: ", nk, " externs: ", ne, "\n", s);
}

}  // namespace kiln
