// cpp_codegen.cpp — kernel functions (outer loop split across threads, stages inside) and the
// entry function that binds buffers and runs kernels and extern calls in order.
#include "kiln/codegen/cpp_codegen.h"

#include <algorithm>
#include <cctype>
#include <functional>

#include "kiln/codegen/expr_emitter.h"
#include "kiln/loops/extern_parts.h"
#include "kiln/support/error.h"

namespace kiln {

namespace {

std::string ptr_type(DType t) { return std::string(dtype_c_type(t)) + "*"; }

struct Gen {
  const Graph& g;
  const KernelPlan& plan;
  const Target& target;
  std::vector<std::string> out;
  int temps = 0;
  int64_t lanes = 0;  // the kernel being generated: Kernel::lanes

  std::string idx(const SymExpr& e) const { return c_index(e, g.symbols); }

  // A graph input some output is written over (plan_in_place): loads from it and stores to that
  // output reach the same memory, so its pointer must not promise otherwise.
  bool written_in_place(ValueId v) const {
    const int32_t input = g.value(v).input;
    return input >= 0 && std::find(plan.in_place_of.begin(), plan.in_place_of.end(), input) != plan.in_place_of.end();
  }

  std::vector<ValueId> stored_values() const {
    std::vector<ValueId> v;
    for (size_t i = 0; i < plan.storage.size(); ++i)
      if (plan.storage[i].kind != Storage::Kind::None && plan.storage[i].kind != Storage::Kind::Local)
        v.push_back(static_cast<ValueId>(i));
    return v;
  }

  void frame() {
    out.push_back("struct Frame {");
    for (ValueId v : stored_values()) out.push_back(str_cat("  ", ptr_type(g.type(v).dtype), " v", v, ";"));
    for (size_t j = 0; j < g.outputs().size(); ++j)
      out.push_back(str_cat("  ", ptr_type(g.type(g.outputs()[j].value).dtype), " out", j, ";"));
    for (const auto& s : g.symbols) out.push_back(str_cat("  int64_t ", c_symbol_name(s), ";"));
    out.push_back("};");
    out.push_back("");
  }

  // Binds the frame fields a kernel body mentions (and only those: less for the compiler to read).
  void unpack_frame(std::vector<std::string>& lines, const std::vector<std::string>& body) {
    std::string text;
    for (const auto& l : body) text += l + "\n";
    auto used = [&](const std::string& name) {
      for (size_t p = text.find(name); p != std::string::npos; p = text.find(name, p + 1)) {
        char before = p ? text[p - 1] : ' ', after = p + name.size() < text.size() ? text[p + name.size()] : ' ';
        if (!std::isalnum(static_cast<unsigned char>(before)) && before != '_' &&
            !std::isalnum(static_cast<unsigned char>(after)) && after != '_')
          return true;
      }
      return false;
    };
    lines.push_back("  const Frame& F = *static_cast<const Frame*>(frame);");
    for (const auto& s : g.symbols)
      if (used(c_symbol_name(s)))
        lines.push_back(str_cat("  const int64_t ", c_symbol_name(s), " = F.", c_symbol_name(s), ";"));
    for (ValueId v : stored_values())
      if (used(str_cat("v", v)))
        lines.push_back(str_cat("  ", ptr_type(g.type(v).dtype), written_in_place(v) ? " v" : " __restrict__ v", v,
                                " = F.v", v, ";"));
    for (size_t j = 0; j < g.outputs().size(); ++j)
      if (used(str_cat("out", j)))
        lines.push_back(str_cat("  ", ptr_type(g.type(g.outputs()[j].value).dtype), " out", j, " = F.out", j, ";"));
  }

  // Where a stage's result element at `coords` (result coordinates) is stored.
  std::string dest(const Stage& s, const std::vector<SymExpr>& coords, ExprEmitter& e) {
    if (s.dest_output >= 0) {
      const auto& strides = g.outputs()[static_cast<size_t>(s.dest_output)].strides;
      SymExpr off(0);
      for (size_t d = 0; d < coords.size(); ++d) off = off + coords[d] * strides[d];
      return str_cat("out", s.dest_output, "[", idx(off), "]");
    }
    return str_cat("v", s.value, "[", e.element(s.value, coords), "]");
  }

  void loops_open(ExprEmitter& e, const Stage& s, const std::vector<SymExpr>& sizes) {
    for (size_t k = 0; k < s.inner_dims.size(); ++k) {
      std::string iv = "i" + std::to_string(k);
      e.open(str_cat("for (int64_t ", iv, " = 0; ", iv, " < ", idx(sizes[static_cast<size_t>(s.inner_dims[k])]), "; ++",
                     iv, ") {"));
    }
  }

  std::vector<SymExpr> domain_coords(const Stage& s) {
    std::vector<SymExpr> c(s.domain.size());
    for (size_t k = 0; k < s.outer_dims.size(); ++k)
      c[static_cast<size_t>(s.outer_dims[k])] = SymExpr::symbol("o" + std::to_string(k));
    for (size_t k = 0; k < s.inner_dims.size(); ++k)
      c[static_cast<size_t>(s.inner_dims[k])] = SymExpr::symbol("i" + std::to_string(k));
    return c;
  }

  // Lane kernels (Kernel::lanes): the innermost loop runs the block's outer indices, ob + l.
  void lanes_open(ExprEmitter& e, const std::string& count = "on") {
    e.line("#pragma GCC ivdep");
    e.open(str_cat("for (int64_t l = 0; l < ", count, "; ++l) {"));
    e.line("const int64_t o0 = ob + l;");
  }

  void map_stage(ExprEmitter& e, const Stage& s) {
    loops_open(e, s, s.domain);
    if (lanes > 0) lanes_open(e);
    auto coords = domain_coords(s);
    std::string v = s.dest_output >= 0 ? e.value(s.value, coords) : e.node_value(*g.producer(s.value), coords);
    e.line(str_cat(dest(s, coords, e), " = ", v, ";"));
    if (lanes > 0) e.close();
    for (size_t k = 0; k < s.inner_dims.size(); ++k) e.close();
  }

  // `into` combined with `x` by the reduction's operator (the schedule's Combine).
  static std::string combined(ReduceSchedule::Combine c, const std::string& into, const std::string& x) {
    using C = ReduceSchedule::Combine;
    switch (c) {
      case C::Add: return str_cat(into, " + ", x);
      case C::Mul: return str_cat(into, " * ", x);
      case C::Max:
      case C::ArgMax: return str_cat("kiln_rt::max_step(", into, ", ", x, ")");
      case C::Min:
      case C::ArgMin: return str_cat("kiln_rt::min_step(", into, ", ", x, ")");
    }
    throw InternalError("unknown combine");
  }

  // One element `x` folded into accumulator `acc`.
  static std::string fold(ReduceSchedule::Combine c, const std::string& acc, const std::string& element) {
    return str_cat("{ const acc_t x = ", element, "; ", acc, " = ", combined(c, acc, "x"), "; }");
  }

  // Schedule OuterLanes: one accumulator per lane, each adding its own elements in loop order. With
  // partial and middle sums (float sums), partials of `part` elements go into middle sums of `mid`
  // partials, then into the total, counted across all reduced loops.
  void reduce_outer_lanes(ExprEmitter& e, const Stage& s, const std::function<std::string()>& element) {
    const ReduceSchedule& r = s.schedule;
    const bool blocked = r.part > 0;
    const std::string init_all = str_cat("for (int l = 0; l < ", lanes, "; ++l) ");
    e.line(str_cat("acc_t acc[", lanes, "];"));
    e.line(init_all + "acc[l] = acc_init;");
    if (blocked) {
      e.line(str_cat("acc_t mid[", lanes, "], part[", lanes, "];"));
      e.line(init_all + "mid[l] = part[l] = acc_init;");
      e.line("int64_t n_part = 0, n_mid = 0;");
    }
    for (size_t k = 0; k < s.inner_dims.size(); ++k) {
      const std::string iv = "i" + std::to_string(k);
      const std::string len = idx(s.domain[static_cast<size_t>(s.inner_dims[k])]);
      e.open(str_cat("for (int64_t ", iv, " = 0; ", iv, " < ", len, "; ++", iv, ") {"));
    }
    lanes_open(e);
    e.line(fold(r.combine, blocked ? "part[l]" : "acc[l]", element()));
    e.close();
    if (blocked) {
      e.open(str_cat("if (++n_part == ", r.part, ") {"));
      e.line("n_part = 0;");
      e.line("for (int64_t l = 0; l < on; ++l) mid[l] = mid[l] + part[l], part[l] = acc_init;");
      e.open(str_cat("if (++n_mid == ", r.mid, ") {"));
      e.line("n_mid = 0;");
      e.line("for (int64_t l = 0; l < on; ++l) acc[l] = acc[l] + mid[l], mid[l] = acc_init;");
      e.close();
      e.close();
    }
    for (size_t k = 0; k < s.inner_dims.size(); ++k) e.close();
    if (blocked) e.line("for (int64_t l = 0; l < on; ++l) acc[l] = acc[l] + (mid[l] + part[l]);");
  }

  // Schedule Sequential: one accumulator in loop order; arg reductions keep the first position of
  // the best value.
  void reduce_sequential(ExprEmitter& e, const Stage& s, const Node& n, const std::function<std::string()>& element) {
    const bool arg =
        s.schedule.combine == ReduceSchedule::Combine::ArgMax || s.schedule.combine == ReduceSchedule::Combine::ArgMin;
    if (arg) e.line("int64_t best = 0;");
    loops_open(e, s, s.domain);
    std::string xs = element();
    if (arg) {
      bool better_max = n.op == Op::argmax;
      e.line(str_cat("if (", better_max ? "(" + xs + " > acc" : "(" + xs + " < acc", " || kiln_rt::isnan_(", xs,
                     ")) && !kiln_rt::isnan_(acc)) { acc = ", xs, "; best = i0; }"));
    } else {
      e.line(fold(s.schedule.combine, "acc", xs));
    }
    for (size_t k = 0; k < s.inner_dims.size(); ++k) e.close();
  }

  // Schedule InnerLanes: `lanes` independent accumulators over the innermost reduced loop (the lane
  // loop vectorizes without reassociating any single accumulator), combined pairwise at the end; with
  // blocks (float sums), each block of `block` elements is summed into its own lanes first, so long
  // rows keep eager's accuracy.
  void reduce_inner_lanes(ExprEmitter& e, const Stage& s, const std::function<std::string()>& element) {
    const ReduceSchedule& r = s.schedule;
    const int64_t L = r.lanes;
    size_t last = s.inner_dims.size() - 1;
    std::string iv = "i" + std::to_string(last);
    std::string len = idx(s.domain[static_cast<size_t>(s.inner_dims[last])]);
    const bool blocked = r.block > 0;
    e.line(str_cat("acc_t lanes[", L, "];"));
    e.line(str_cat("for (int l = 0; l < ", L, "; ++l) lanes[l] = acc_init;"));
    for (size_t k = 0; k < last; ++k) {
      std::string v = "i" + std::to_string(k);
      e.open(str_cat("for (int64_t ", v, " = 0; ", v, " < ", idx(s.domain[static_cast<size_t>(s.inner_dims[k])]),
                     "; ++", v, ") {"));
    }
    std::string into = "lanes";
    std::string begin = "0", end = len;
    if (blocked) {
      e.open(str_cat("for (int64_t ", iv, "B = 0; ", iv, "B < ", len, "; ", iv, "B += ", r.block, ") {"));
      e.line(str_cat("const int64_t ", iv, "E = kiln_rt::min_i64(", iv, "B + ", r.block, ", ", len, ");"));
      e.line(str_cat("acc_t part[", L, "];"));
      e.line(str_cat("for (int l = 0; l < ", L, "; ++l) part[l] = acc_init;"));
      into = "part";
      begin = iv + "B";
      end = iv + "E";
    }
    e.line(str_cat("const int64_t ", iv, "T = ", end, " - (", end, " - ", begin, ") % ", L, ";"));
    e.open(str_cat("for (int64_t ", iv, "b = ", begin, "; ", iv, "b < ", iv, "T; ", iv, "b += ", L, ") {"));
    // Unrolling the lane loop first would leave only straight-line code for the vectorizer;
    // kept as a loop, it becomes one vector operation per statement.
    e.line("#pragma GCC unroll 1");
    e.open(str_cat("for (int64_t l = 0; l < ", L, "; ++l) {"));
    e.line(str_cat("const int64_t ", iv, " = ", iv, "b + l;"));
    e.line(fold(r.combine, into + "[l]", element()));
    e.close();
    e.close();
    e.open(str_cat("for (int64_t ", iv, " = ", iv, "T; ", iv, " < ", end, "; ++", iv, ") {"));
    e.line(fold(r.combine, into + "[0]", element()));
    e.close();
    if (blocked) {
      e.line(str_cat("for (int l = 0; l < ", L, "; ++l) lanes[l] = lanes[l] + part[l];"));
      e.close();
    }
    for (size_t k = 0; k < last; ++k) e.close();
    // Pairwise combination of the lanes.
    e.line(str_cat("for (int w = ", L / 2, "; w > 0; w /= 2)"));
    e.line(str_cat("  for (int l = 0; l < w; ++l) ", fold(r.combine, "lanes[l]", "lanes[l + w]")));
    e.line(fold(r.combine, "acc", "lanes[0]"));
  }

  void reduce_stage(ExprEmitter& e, const Stage& s) {
    using K = ReduceSchedule::Kind;
    using C = ReduceSchedule::Combine;
    const Node& n = *g.producer(s.value);
    const ReduceSchedule& r = s.schedule;
    KILN_CHECK(r.kind != K::None, "reduction %", s.value, " reached the emitter without a schedule");
    DType rt = g.type(s.value).dtype;
    DType in_t = g.type(n.inputs[0]).dtype;
    std::string T(dtype_c_type(in_t));
    const bool arg = r.combine == C::ArgMax || r.combine == C::ArgMin;
    std::string init;
    switch (r.combine) {
      case C::Add: init = "0"; break;
      case C::Mul: init = "1"; break;
      case C::Max:
      case C::ArgMax: init = str_cat("kiln_rt::lowest<", T, ">()"); break;
      case C::Min:
      case C::ArgMin: init = str_cat("kiln_rt::highest<", T, ">()"); break;
    }
    std::string acc_t(dtype_c_type(arg ? in_t : rt));
    e.open("{");
    e.line(str_cat("using acc_t = ", acc_t, ";"));
    e.line(str_cat("const acc_t acc_init = static_cast<acc_t>(", init, ");"));
    if (r.kind != K::OuterLanes) e.line("acc_t acc = acc_init;");
    auto coords = domain_coords(s);
    auto element = [&]() {
      std::string x = e.value(n.inputs[0], coords);
      return rt == in_t || arg ? x : str_cat("static_cast<acc_t>(", x, ")");
    };
    switch (r.kind) {
      case K::OuterLanes: reduce_outer_lanes(e, s, element); break;
      case K::Sequential: reduce_sequential(e, s, n, element); break;
      case K::InnerLanes: reduce_inner_lanes(e, s, element); break;
      case K::None: break;
    }
    // Result coordinates: kept dims follow the outer loops; keepdim's reduced dims are 0.
    std::vector<SymExpr> rc;
    bool keep = n.attr_bool("keepdim");
    const auto& dims = n.attr_ints("dims");
    size_t ko = 0;
    for (int64_t d = 0; d < static_cast<int64_t>(s.domain.size()); ++d) {
      bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
      if (!reduced)
        rc.push_back(SymExpr::symbol("o" + std::to_string(ko++)));
      else if (keep)
        rc.push_back(SymExpr(0));
    }
    if (lanes > 0) {
      lanes_open(e);
      e.line(str_cat(dest(s, rc, e), " = acc[l];"));
      e.close();
    } else {
      e.line(str_cat(dest(s, rc, e), " = ", arg ? "best" : "acc", ";"));
    }
    e.close();
  }

  void kernel(const Kernel& k) {
    std::vector<std::string> body;
    out.push_back(str_cat("static void ", k.name, "(void* frame, int64_t begin, int64_t end) {"));
    ExprEmitter e(g, plan, body, 1, temps);
    // Scratch rows for values only this kernel reads: one row per thread, reused for every outer index.
    int32_t kernel_index = static_cast<int32_t>(&k - plan.kernels.data());
    for (size_t v = 0; v < plan.storage.size(); ++v) {
      const Storage& s = plan.storage[v];
      if (s.kind != Storage::Kind::Local || s.kernel != kernel_index) continue;
      std::string T(dtype_c_type(g.type(static_cast<ValueId>(v)).dtype));
      const SymExpr rows = s.offset * SymExpr(std::max<int64_t>(1, k.lanes));  // a row per lane
      if (rows.is_const() && rows.const_value() <= 4096) {
        e.line(str_cat("alignas(64) ", T, " v", v, "[", rows.const_value(), "];"));
      } else {
        e.line(str_cat("kiln_rt::Row<", T, "> v", v, "_row(", idx(rows), ");"));
        e.line(str_cat(T, "* __restrict__ v", v, " = v", v, "_row.data;"));
      }
    }
    lanes = k.lanes;
    e.set_local_lane(lanes > 0 ? "l" : "");
    if (lanes > 0) {
      e.open(str_cat("for (int64_t ob = begin; ob < end; ob += ", lanes, ") {"));
      e.line(str_cat("const int64_t on = kiln_rt::min_i64(", lanes, ", end - ob);"));
    } else {
      e.open("for (int64_t o = begin; o < end; ++o) {");
    }
    SymExpr inner(1);
    for (size_t d = k.outer.size(); lanes == 0 && d-- > 0;) {
      std::string q = inner.is_const(1) ? "o" : str_cat("(o / (", idx(inner), "))");
      std::string v = d == 0 ? q : str_cat(q, " % (", idx(k.outer[d]), ")");
      e.line(str_cat("const int64_t o", d, " = ", v, ";"));
      inner = inner * k.outer[d];
    }
    for (const Stage& s : k.stages) {
      e.line(str_cat(
          "// stage %", s.value, s.dest_output >= 0 ? str_cat(" -> output ", s.dest_output) : "",
          g.producer(s.value) && !g.producer(s.value)->origin.empty() ? " from " + g.producer(s.value)->origin : ""));
      if (s.reduction)
        reduce_stage(e, s);
      else
        map_stage(e, s);
    }
    e.close();
    // Gathers record bad indices in the kernel's own flag (kiln_rt::checked_index).
    bool gathers = false;
    for (const auto& l : body) gathers = gathers || l.find("index_bad") != std::string::npos;
    if (gathers) {
      body.insert(body.begin(), "  int index_bad = 0;");
      body.push_back("  if (index_bad) kiln_rt::set_index_error();");
    }
    std::vector<std::string> head;
    unpack_frame(head, body);
    out.insert(out.end(), head.begin(), head.end());
    out.insert(out.end(), body.begin(), body.end());
    out.push_back("}");
    out.push_back("");
  }

  // Work per outer index, to pick a grain that keeps each thread's chunk worth the dispatch.
  SymExpr inner_work(const Kernel& k) {
    SymExpr w(0);
    for (const Stage& s : k.stages) {
      SymExpr p(1);
      for (auto d : s.inner_dims) p = p * s.domain[static_cast<size_t>(d)];
      w = w + p;
    }
    return w;
  }

  std::string pointer_of(const AffineLayout& l) { return str_cat("(F.v", l.base, " + ", idx(l.offset), ")"); }

  // "{b1, b2, row, col}" element strides of a rank-3 or rank-4 attention operand (rank 3: b1 = 1).
  std::string attention_strides(const std::vector<SymExpr>& st, size_t count = 4) {
    std::vector<std::string> parts;
    if (st.size() == count - 1) parts.push_back("0");
    for (const SymExpr& e : st) parts.push_back(idx(e));
    std::string r = "{";
    for (size_t i = 0; i < parts.size(); ++i) r += (i ? ", " : "") + parts[i];
    return r + "}";
  }

  // One fused attention call; its results are parts of a flat buffer the importer unpacks with views.
  void attention_call(const Node& n, std::vector<std::string>& lines) {
    bool fwd = n.op == Op::attention;
    size_t o = fwd ? 0 : 1;
    std::vector<AffineLayout> in;
    for (ValueId v : n.inputs) {
      auto l = affine_layout(g, plan.realized, plan.storage, v);
      KILN_CHECK(l, "attention operands must be strided");
      in.push_back(*l);
    }
    const auto& qs = g.type(n.inputs[o]).sizes;
    const auto& ks = g.type(n.inputs[o + 1]).sizes;
    const auto& vs = g.type(n.inputs[o + 2]).sizes;
    size_t r = qs.size();
    DType t = g.type(n.result).dtype;
    std::string ty = t == DType::F32 ? "float" : "double", sfx = t == DType::F32 ? "f32" : "f64";
    std::string b1 = r == 4 ? idx(qs[0]) : "1", b2 = idx(qs[r - 3]);
    lines.push_back(str_cat("  {  // ", n.origin));
    lines.push_back(str_cat("    const int64_t shape[6] = {", b1, ", ", b2, ", ", idx(qs[r - 2]), ", ", idx(ks[r - 2]),
                            ", ", idx(qs[r - 1]), ", ", idx(vs[r - 1]), "};"));
    for (size_t i = 0; i < in.size(); ++i) {
      bool is_lse = !fwd && i == 5;
      lines.push_back(
          str_cat("    const int64_t st", i, "[4] = ", attention_strides(in[i].strides, is_lse ? 3 : 4), ";"));
    }
    std::string causal = n.attr_bool("causal") ? "1" : "0";
    std::string scale = float_literal(n.attr_float("scale"), t);
    auto arg = [&](size_t i) { return str_cat(pointer_of(in[i]), ", st", i); };
    // Each result part goes into the value that is exactly that part when the planner chose one
    // (extern_parts.h), else into its place in the flat result buffer.
    const std::vector<ResultPart> parts = extern_result_parts(g, n);
    const auto chosen = plan.part_values.find(static_cast<int32_t>(&n - g.nodes().data()));
    std::vector<std::string> dest;
    for (size_t p = 0; p < parts.size(); ++p) {
      const ValueId v = chosen == plan.part_values.end() ? -1 : chosen->second[p];
      const bool is_lse = fwd && p == 1;
      std::vector<SymExpr> st = parts[p].strides;
      std::string ptr;
      if (v >= 0) {
        ptr = str_cat("F.v", v);
        st = plan.storage[static_cast<size_t>(v)].strides;
      } else {
        const SymExpr& unit = plan.storage[static_cast<size_t>(n.result)].strides.back();  // flat is contiguous
        for (SymExpr& e : st) e = e * unit;
        ptr = str_cat("(F.v", n.result, " + ", idx(parts[p].offset * unit), ")");
      }
      lines.push_back(str_cat("    const int64_t rst", p, "[4] = ", attention_strides(st, is_lse ? 3 : 4), ";"));
      dest.push_back(str_cat(ptr, ", rst", p));
    }
    if (fwd) {
      lines.push_back(str_cat("    kk.attention_fwd_", sfx, "(shape, ", causal, ", ", scale, ", ", arg(0), ", ", arg(1),
                              ", ", arg(2), ", ", dest[0], ", ", dest[1], ");"));
    } else {
      lines.push_back(str_cat("    kk.attention_bwd_", sfx, "(shape, ", causal, ", ", scale, ", ", arg(0), ", ", arg(1),
                              ", ", arg(2), ", ", arg(3), ", ", arg(4), ", ", arg(5), ", ", dest[0], ", ", dest[1],
                              ", ", dest[2], ");"));
    }
    lines.push_back("  }");
  }

  // Runs kernel k over its outer loop across the threads.
  std::string launch(const Kernel& k) {
    SymExpr total = product(k.outer);
    SymExpr work = inner_work(k);
    std::string grain = work.is_const()
                            ? std::to_string(std::max<int64_t>(1, 32768 / std::max<int64_t>(1, work.const_value())))
                            : str_cat("kiln_rt::max_i64(1, 32768 / kiln_rt::max_i64(1, ", idx(work), "))");
    return str_cat("kiln_parallel_for(0, ", idx(total), ", ", grain, ", ", k.name, ", &F);");
  }

  // Sibling matmuls sharing A (or B) in one call (gemm_groups.cpp): the other operand's and C's
  // pointers per part.
  void gemm_group_call(const Step& st, std::vector<std::string>& lines) {
    const std::vector<int32_t> nodes = st.extern_nodes();
    const Node& n = g.node(st.node);
    const size_t shared = st.siblings_share_b ? 1 : 0, other = 1 - shared;
    const auto s = affine_layout(g, plan.realized, plan.storage, n.inputs[shared]);
    KILN_CHECK(s.has_value(), "matmul operands must be strided");
    const DType t = g.type(n.result).dtype;
    const std::string elem = t == DType::F32 ? "float" : "double";
    std::string parts, cs, origins;
    std::optional<AffineLayout> o;
    for (int32_t e : nodes) {
      const Node& x = g.node(e);
      o = affine_layout(g, plan.realized, plan.storage, x.inputs[other]);
      KILN_CHECK(o.has_value(), "matmul operands must be strided");
      parts += str_cat(parts.empty() ? "" : ", ", pointer_of(*o));
      cs += str_cat(cs.empty() ? "" : ", ", "F.v", x.result);
      origins += str_cat(origins.empty() ? "" : ", ", x.origin);
    }
    const auto& as = g.type(n.inputs[0]).sizes;
    const auto& b_sizes = g.type(n.inputs[1]).sizes;
    const Storage& rs = plan.storage[static_cast<size_t>(n.result)];
    const Kernel* ep = st.epilogue >= 0 ? &plan.kernels[static_cast<size_t>(st.epilogue)] : nullptr;
    KILN_CHECK(!ep || !st.siblings_share_b, "a shared-B group reports no rows");
    const std::string sfx = t == DType::F32 ? "f32" : "f64";
    const std::string planes =
        t == DType::F32 ? str_cat(", ", n.has_attr("bf16_planes") ? n.attr_int("bf16_planes") : 0) : "";
    auto strides = [&](const AffineLayout& l) { return str_cat(idx(l.strides[0]), ", ", idx(l.strides[1])); };
    lines.push_back("  {");
    lines.push_back(str_cat("    const ", elem, "* const group_", shared ? "a" : "b", "[] = {", parts, "};"));
    lines.push_back(str_cat("    ", elem, "* const group_c[] = {", cs, "};"));
    const std::string head = str_cat(nodes.size(), ", ", idx(as[0]), ", ", idx(b_sizes[1]), ", ", idx(as[1]));
    const std::string c_args = str_cat("group_c, ", idx(rs.strides[0]), ", ", idx(rs.strides[1]), planes);
    if (st.siblings_share_b) {
      lines.push_back(str_cat("    kk.gemm_shared_b_", sfx, "(", head, ",  // ", origins));
      lines.push_back(
          str_cat("        group_a, ", strides(*o), ", ", pointer_of(*s), ", ", strides(*s), ", ", c_args, ");"));
    } else {
      lines.push_back(str_cat("    ", ep ? "if (!" : "", "kk.gemm_group_", sfx, "(", head, ",  // ", origins));
      lines.push_back(str_cat("        ", pointer_of(*s), ", ", strides(*s), ", group_b, ", strides(*o), ", ", c_args,
                              ep ? str_cat(", ", ep->name, ", &F))") : ", nullptr, nullptr);"));
      if (ep) lines.push_back(str_cat("      ", launch(*ep)));
    }
    lines.push_back("  }");
  }

  void extern_call(const Step& st, std::vector<std::string>& lines) {
    const Node& n = g.node(st.node);
    const Storage& rs = plan.storage[static_cast<size_t>(n.result)];
    std::string result_ptr = str_cat("F.v", n.result);
    if (n.op == Op::matmul && !st.siblings.empty()) {
      gemm_group_call(st, lines);
      return;
    }
    if (n.op == Op::matmul) {
      auto a = affine_layout(g, plan.realized, plan.storage, n.inputs[0]);
      auto b = affine_layout(g, plan.realized, plan.storage, n.inputs[1]);
      KILN_CHECK(a && b, "matmul operands must be strided");
      const auto& as = g.type(n.inputs[0]).sizes;
      const auto& bs = g.type(n.inputs[1]).sizes;
      bool batched = as.size() == 3;
      size_t o = batched ? 1 : 0;
      auto bstride = [&](const std::vector<SymExpr>& st) { return batched ? idx(st[0]) : std::string("0"); };
      DType t = g.type(n.result).dtype;
      std::string fn = t == DType::F32 ? "kk.gemm_f32" : "kk.gemm_f64";
      std::string one = t == DType::F32 ? "1.0f" : "1.0", zero = t == DType::F32 ? "0.0f" : "0.0";
      // With a row epilogue the GEMM runs it per finished block of rows, or says it did not.
      const Kernel* ep = st.epilogue >= 0 ? &plan.kernels[static_cast<size_t>(st.epilogue)] : nullptr;
      lines.push_back(str_cat("  ", ep ? "if (!" : "", fn, "(", batched ? idx(as[0]) : "1", ", ", idx(as[o]), ", ",
                              idx(bs[o + 1]), ", ", idx(as[o + 1]), ", ", one, ",  // ", n.origin));
      lines.push_back(str_cat("      ", pointer_of(*a), ", ", bstride(a->strides), ", ", idx(a->strides[o]), ", ",
                              idx(a->strides[o + 1]), ","));
      lines.push_back(str_cat("      ", pointer_of(*b), ", ", bstride(b->strides), ", ", idx(b->strides[o]), ", ",
                              idx(b->strides[o + 1]), ", ", zero, ","));
      const std::string planes =
          t == DType::F32 ? str_cat(", ", n.has_attr("bf16_planes") ? n.attr_int("bf16_planes") : 0) : "";
      lines.push_back(str_cat("      ", result_ptr, ", ", bstride(rs.strides), ", ", idx(rs.strides[o]), ", ",
                              idx(rs.strides[o + 1]), planes,
                              ep ? str_cat(", ", ep->name, ", &F))") : ", nullptr, nullptr);"));
      if (ep) lines.push_back(str_cat("    ", launch(*ep)));
      return;
    }
    if (n.op == Op::index_add_rows) {
      auto ix = affine_layout(g, plan.realized, plan.storage, n.inputs[0]);
      auto src = affine_layout(g, plan.realized, plan.storage, n.inputs[1]);
      KILN_CHECK(ix && src, "index_add_rows operands must be strided");
      const auto& rt = g.type(n.result);
      DType it = g.type(n.inputs[0]).dtype;
      KILN_USER_CHECK(it == DType::I64 || it == DType::I32, "embedding indices must be int64 or int32");
      KILN_USER_CHECK(rs.strides[1].is_const(1) || rt.sizes[1].is_const(1), "index_add_rows needs unit column stride");
      KILN_USER_CHECK(ix->strides[0].is_const(1) || g.type(n.inputs[0]).sizes[0].is_const(1),
                      "indices must be contiguous");
      int64_t pad = n.has_attr("padding_idx") ? n.attr_int("padding_idx") : INT64_MIN;
      std::string fn = rt.dtype == DType::F32 ? "kiln_index_add_rows_f32" : "kiln_index_add_rows_f64";
      lines.push_back(
          str_cat("  if (", fn, "(", result_ptr, ", ", idx(rt.sizes[0]), ", ", idx(rt.sizes[1]), ", ",
                  idx(rs.strides[0]), ", ", pointer_of(*ix), ", ", it == DType::I64 ? 1 : 0, ", ",
                  idx(g.type(n.inputs[0]).sizes[0]), ", ", pointer_of(*src), ", ", idx(src->strides[0]), ", ",
                  pad == INT64_MIN ? "int64_t(INT64_MIN)" : std::to_string(pad) + "LL",
                  ") != 0) { kiln_set_error(\"index out of range in embedding backward / index_put\"); return 1; }"));
      return;
    }
    if (n.op == Op::attention || n.op == Op::attention_backward) {
      attention_call(n, lines);
      return;
    }
    throw InternalError(str_cat("no extern call for ", op_name(n.op)));
  }

  void entry() {
    std::vector<std::string> lines;
    lines.push_back("extern \"C\" int kiln_entry(void* const* buffers, const int64_t* symbols, char* arena) {");
    lines.push_back("  (void)symbols; (void)arena;");
    lines.push_back("  Frame F;");
    for (size_t i = 0; i < g.symbols.size(); ++i)
      lines.push_back(str_cat("  F.", c_symbol_name(g.symbols[i]), " = symbols[", i, "];"));
    for (size_t i = 0; i < g.symbols.size(); ++i)
      lines.push_back(
          str_cat("  const int64_t ", c_symbol_name(g.symbols[i]), " = F.", c_symbol_name(g.symbols[i]), ";"));
    size_t nin = g.inputs().size();
    for (size_t j = 0; j < g.outputs().size(); ++j)
      lines.push_back(str_cat("  F.out", j, " = static_cast<", ptr_type(g.type(g.outputs()[j].value).dtype),
                              ">(buffers[", nin + j, "]);"));
    for (ValueId v : stored_values()) {
      const Storage& s = plan.storage[static_cast<size_t>(v)];
      std::string pt = ptr_type(g.type(v).dtype);
      switch (s.kind) {
        case Storage::Kind::Input:
          lines.push_back(str_cat("  F.v", v, " = static_cast<", pt, ">(buffers[", s.index, "]);"));
          break;
        case Storage::Kind::Output: lines.push_back(str_cat("  F.v", v, " = F.out", s.index, ";")); break;
        case Storage::Kind::Arena:
          lines.push_back(str_cat("  F.v", v, " = reinterpret_cast<", pt, ">(arena + ", idx(s.offset), ");"));
          break;
        default: break;
      }
    }
    // The runtime kernels of the target's ISA level (the driver checked they load here).
    bool calls_kernels = false;
    for (const Step& st : plan.steps)
      if (st.kind == Step::Kind::Extern) {
        const Op op = g.node(st.node).op;
        calls_kernels = calls_kernels || op == Op::matmul || op == Op::attention || op == Op::attention_backward;
      }
    if (calls_kernels)
      lines.push_back(
          str_cat("  const kiln_kernels& kk = *kiln_kernels_for(", target.isa, ");  // ", target.isa_name()));
    lines.push_back("  kiln_rt::clear_index_error();");
    for (const Step& st : plan.steps) {
      if (st.kind == Step::Kind::Extern) {
        extern_call(st, lines);
        continue;
      }
      lines.push_back("  " + launch(plan.kernels[static_cast<size_t>(st.kernel)]));
    }
    lines.push_back("  if (kiln_rt::index_error()) {");
    lines.push_back("    kiln_set_error(\"index out of range in an indexing op (embedding / index)\");");
    lines.push_back("    return 1;");
    lines.push_back("  }");
    lines.push_back("  return 0;");
    lines.push_back("}");
    out.insert(out.end(), lines.begin(), lines.end());
  }
};

}  // namespace

std::string generate_cpp(const Graph& g, const KernelPlan& plan, const Target& target) {
  Gen gen{g, plan, target, {}, 0};
  gen.out.push_back("// Generated by kiln. Each kernel runs its outer loop across threads; stages inside it");
  gen.out.push_back("// share each outer index. Comments name the IR values and the ATen nodes they come from.");
  gen.out.push_back("#include \"kiln/runtime/kiln_prelude.h\"");
  gen.out.push_back("");
  gen.out.push_back("namespace {");
  gen.frame();
  for (const Kernel& k : plan.kernels) gen.kernel(k);
  gen.out.push_back("}  // namespace");
  gen.out.push_back("");
  gen.entry();
  std::string s;
  for (const auto& l : gen.out) s += l + "\n";
  return s;
}

}  // namespace kiln
