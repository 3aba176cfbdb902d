// module.cpp — the kiln._C Python module: graph building, compiling, running, stats.
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "kiln/bindings/boxed_call.h"
#include "kiln/bindings/torch_tensor.h"
#include "kiln/driver/compiled_graph.h"
#include "kiln/driver/lower.h"
#include "kiln/importer/aten_importer.h"
#include "kiln/jit/disk_cache.h"
#include "kiln/jit/jit.h"
#include "kiln/passes/pipeline.h"
#include "kiln/runtime/kiln_runtime.h"
#include "kiln/support/error.h"

namespace nb = nanobind;
using namespace kiln;
using kiln::bindings::read_tensor;
using kiln::bindings::TensorView;

namespace {

// Markers the Python walker uses for tensor arguments and symbolic ints.
struct ValueRef {
  ValueId id;
};
struct SymRef {
  std::string expr;
};

std::vector<SymExpr> to_syms(const nb::handle& seq) {
  std::vector<SymExpr> out;
  for (nb::handle h : seq) {
    if (nb::isinstance<nb::int_>(h))
      out.emplace_back(nb::cast<int64_t>(h));
    else if (nb::isinstance<SymRef>(h))
      out.push_back(parse_sym_expr(nb::cast<SymRef&>(h).expr));
    else
      out.push_back(parse_sym_expr(nb::cast<std::string>(nb::str(h))));
  }
  return out;
}

AtenArg to_arg(const nb::handle& h) {
  AtenArg a;
  if (h.is_none()) return a;
  if (nb::isinstance<nb::bool_>(h)) {
    a.kind = AtenArg::Kind::Bool;
    a.b = nb::cast<bool>(h);
  } else if (nb::isinstance<nb::int_>(h)) {
    a.kind = AtenArg::Kind::Int;
    a.i = nb::cast<int64_t>(h);
  } else if (nb::isinstance<nb::float_>(h)) {
    a.kind = AtenArg::Kind::Float;
    a.f = nb::cast<double>(h);
  } else if (nb::isinstance<nb::str>(h)) {
    a.kind = AtenArg::Kind::Str;
    a.s = nb::cast<std::string>(h);
  } else if (nb::isinstance<ValueRef>(h)) {
    a.kind = AtenArg::Kind::Tensor;
    a.tensor = nb::cast<ValueRef&>(h).id;
  } else if (nb::isinstance<SymRef>(h)) {
    a.kind = AtenArg::Kind::Sym;
    a.sym = parse_sym_expr(nb::cast<SymRef&>(h).expr);
  } else if (nb::isinstance<nb::list>(h) || nb::isinstance<nb::tuple>(h)) {
    a.kind = AtenArg::Kind::List;
    for (nb::handle x : h) a.list.push_back(to_arg(x));
  } else {
    throw UserError("kiln cannot take an argument of type " + nb::cast<std::string>(nb::str(h.type())));
  }
  return a;
}

DType dtype_of(const nb::handle& tensor_dtype) {
  return dtype_from_torch(nb::cast<std::string>(nb::str(tensor_dtype)));
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "kiln's C++ compiler core";
  // Dynamo and AOTAutograd keep compiled graphs alive until interpreter exit; that is not a leak.
  nb::set_leak_warnings(false);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const UserError& e) {
      PyErr_SetString(PyExc_ValueError, (std::string("[kiln user error] ") + e.what()).c_str());
    } catch (const InternalError& e) {
      PyErr_SetString(PyExc_RuntimeError, (std::string("[kiln internal error] ") + e.what()).c_str());
    }
  });

  nb::class_<ValueRef>(m, "Value").def(nb::init<ValueId>()).def_ro("id", &ValueRef::id);
  nb::class_<SymRef>(m, "Sym").def(nb::init<std::string>()).def_ro("expr", &SymRef::expr);

  nb::class_<AtenImporter>(m, "GraphBuilder")
      .def(nb::init<>())
      .def("add_symbol", &AtenImporter::add_symbol)
      .def("add_input",
           [](AtenImporter& b, nb::handle dtype, nb::handle sizes, nb::handle strides, const std::string& name) {
             return ValueRef{b.add_input(dtype_of(dtype), to_syms(sizes), to_syms(strides), name)};
           })
      .def("add_call",
           [](AtenImporter& b, const std::string& target, nb::list args, nb::list results, const std::string& origin) {
             std::vector<AtenArg> a;
             for (nb::handle h : args) a.push_back(to_arg(h));
             std::vector<AtenResult> r;
             for (nb::handle h : results) {
               nb::tuple t = nb::cast<nb::tuple>(h);
               r.push_back({dtype_of(t[0]), to_syms(t[1]), to_syms(t[2])});
             }
             std::vector<ValueRef> out;
             for (ValueId v : b.add_call(target, a, r, origin)) out.push_back({v});
             return out;
           })
      .def("add_output", [](AtenImporter& b, ValueRef v, nb::handle strides) { b.add_output(v.id, to_syms(strides)); })
      .def("text", [](const AtenImporter& b) { return print_graph(b.graph()); })
      .def("kernels", [](const AtenImporter& b) { return describe_kernels(b.graph()); });

  m.def("supports", &AtenImporter::supports);
  // One call per FX node: "" if kiln compiles it, else why not (see AtenImporter::classify). dtypes:
  // the torch dtypes of its tensors; on_cpu: whether they all live on the CPU.
  m.def("classify", [](const std::string& target, nb::list dtypes, bool on_cpu) {
    std::vector<std::optional<DType>> ds;
    for (nb::handle h : dtypes) {
      try {
        ds.push_back(dtype_of(h));
      } catch (const std::exception&) {
        ds.push_back(std::nullopt);  // complex, half, ...: no kiln IR type
      }
    }
    return AtenImporter::classify(target, ds, on_cpu);
  });
  m.def("supported_targets", &AtenImporter::supported_targets);

  nb::class_<CompiledGraph>(m, "CompiledGraph")
      .def_prop_ro("num_kernels", &CompiledGraph::num_kernels)
      .def_prop_ro("isa", &CompiledGraph::isa)
      .def_prop_ro("num_inputs", [](const CompiledGraph& c) { return c.graph().inputs().size(); })
      .def_prop_ro("num_outputs", [](const CompiledGraph& c) { return c.graph().outputs().size(); })
      .def_prop_ro("times",
                   [](const CompiledGraph& c) {
                     nb::dict d;
                     d["passes"] = c.times().passes;
                     d["codegen"] = c.times().codegen;
                     d["compiler"] = c.times().compiler;
                     d["total"] = c.times().total;
                     d["cache_hit"] = c.times().cache_hit;
                     return d;
                   })
      .def("output_layout",
           [](const CompiledGraph& c, size_t j, const std::vector<int64_t>& syms) {
             std::vector<int64_t> sizes, strides;
             c.output_layout(j, syms, sizes, strides);
             return nb::make_tuple(nb::tuple(nb::cast(sizes)), nb::tuple(nb::cast(strides)));
           })
      .def("in_place_of", [](const CompiledGraph& c, size_t j) { return c.in_place_of(j); })
      .def("output_alias",
           [](const CompiledGraph& c, size_t j, const std::vector<int64_t>& syms) -> nb::object {
             const auto& a = c.output_alias(j);
             if (!a) return nb::none();
             SymBindings env;
             for (size_t i = 0; i < c.graph().symbols.size(); ++i) env[c.graph().symbols[i]] = syms.at(i);
             return nb::make_tuple(a->of_output ? "output" : "input", a->input, a->offset.eval(env));
           })
      .def("output_dtype",
           [](const CompiledGraph& c, size_t j) {
             return std::string(dtype_name(c.graph().type(c.graph().outputs().at(j).value).dtype));
           })
      .def(
          "run",
          [](CompiledGraph& c, nb::list inputs, nb::list outputs, const std::vector<int64_t>& syms, bool check) {
            size_t ni = nb::len(inputs), no = nb::len(outputs);
            std::vector<void*> buffers(ni + no, nullptr);
            std::vector<TensorView> views(ni);
            std::vector<TensorArg> args(ni);
            for (size_t i = 0; i < ni; ++i) {
              read_tensor(inputs[i].ptr(), views[i]);
              args[i] = views[i].arg;
              buffers[i] = views[i].arg.data;
            }
            for (size_t j = 0; j < no; ++j) {
              nb::handle o = outputs[j];
              buffers[ni + j] = o.is_none() ? nullptr : kiln::bindings::tensor_data(o.ptr());
            }
            if (check) c.check_inputs(args, syms);
            nb::gil_scoped_release release;
            c.run(buffers.data(), syms);
          },
          nb::arg("inputs"), nb::arg("outputs"), nb::arg("syms"), nb::arg("check") = true);

  m.def(
      "compile",
      [](const AtenImporter& b, const std::string& include_dir, const std::string& lib_dir,
         const std::string& debug_dir, const std::string& mode, bool verify, const std::vector<bool>& alias_ok,
         const std::vector<std::pair<int32_t, int32_t>>& in_place, int gemm_bf16_planes, const std::string& isa) {
        CompileOptions o{include_dir, lib_dir,          debug_dir,         mode, verify, alias_ok,
                         in_place,    gemm_bf16_planes, Target::named(isa)};
        nb::gil_scoped_release release;
        return CompiledGraph::compile(b.graph(), o);
      },
      nb::arg("builder"), nb::arg("include_dir"), nb::arg("lib_dir"), nb::arg("debug_dir") = "",
      nb::arg("mode") = "default", nb::arg("verify") = false, nb::arg("alias_ok") = std::vector<bool>{},
      nb::arg("in_place") = std::vector<std::pair<int32_t, int32_t>>{}, nb::arg("gemm_bf16_planes") = 0,
      nb::arg("isa") = "");
  // The target description (kiln.target()): the process's, or this machine at a named level.
  m.def(
      "target",
      [](const std::string& isa) {
        const Target t = Target::named(isa);
        nb::dict d;
        d["isa"] = t.isa_name();
        d["detected_isa"] = std::string(kiln_isa_name(t.detected_isa));
        d["forced"] = t.isa != t.detected_isa;
        d["vector_bits"] = t.vector_bytes * 8;
        d["vector_registers"] = t.vector_registers;
        d["float_lanes"] = t.vector_bytes / 4;
        d["reduction_lanes"] = t.reduction_lanes();
        d["l1d_bytes"] = t.l1d_bytes;
        d["l2_bytes"] = t.l2_bytes;
        d["l3_bytes"] = t.l3_bytes;
        d["cores"] = t.cores;
        d["cpu"] = t.cpu;
        d["compiler_flags"] = t.compiler_flags();
        // Float GEMMs may run on AMX tiles at this level (KILN_GEMM_AMX=0 turns them off).
        const kiln_kernels* k = kiln_kernels_for(t.isa);
        d["amx"] = k != nullptr && k->gemm_has_amx() != 0;
        return d;
      },
      nb::arg("isa") = "");

  m.def("stats", [] {
    nb::dict d;
    DriverStats s = driver_stats();
    jit::JitStats j = jit::stats();
    d["graphs_compiled"] = s.graphs_compiled;
    d["kernels_compiled"] = s.kernels_compiled;
    d["calls"] = s.calls;
    d["kernels_run"] = s.kernels_run;
    d["passes_seconds"] = s.passes_seconds;
    d["codegen_seconds"] = s.codegen_seconds;
    d["compiler_runs"] = j.compiles;
    d["cache_disk_hits"] = j.disk_hits;
    d["cache_memory_hits"] = j.memory_hits;
    d["cache_bad_entries"] = j.bad_entries;
    d["compiler_seconds"] = j.compile_seconds;
    return d;
  });
  m.def("reset_stats", &reset_driver_stats);
  m.def("lowering_steps", &lowering_steps);  // driver/lower.cpp's steps, in order
  m.def("cache_dir", &jit::cache_dir);
  m.def("build_id", [] { return std::string(build_id()); });
  m.def("gemm_has_amx", [] { return kiln_gemm_has_amx() != 0; });
  // Verified blobs in the disk cache, for decisions made before AOTAutograd (the attention rewrite).
  m.def("cache_load", [](const std::string& key) -> nb::object {
    bool bad = false;
    auto payload = jit::DiskCache(jit::cache_dir()).load_blob(key, &bad);
    if (bad) jit::note_bad_entry();
    if (!payload) return nb::none();
    return nb::bytes(payload->data(), payload->size());
  });
  m.def("cache_store", [](const std::string& key, nb::bytes payload) {
    jit::DiskCache(jit::cache_dir()).store_blob(key, std::string(payload.c_str(), payload.size()));
  });
  m.def("set_num_threads", &kiln_set_num_threads);
  m.def("share_openmp_pool", [](const std::string& path) { return kiln_share_openmp_pool(path.c_str()) != 0; });
  m.def("get_num_threads", &kiln_get_num_threads);
  kiln::bindings::bind_boxed_call(m);
  m.def("use_fast_data_ptr", [](uintptr_t address, nb::handle tensor_type, nb::handle parameter_type) {
    auto& fast = kiln::bindings::FastDataPtr::get();
    KILN_USER_CHECK(PyType_Check(tensor_type.ptr()) && PyType_Check(parameter_type.ptr()), "kiln: expected types");
    tensor_type.inc_ref();  // kept for the process's life, like the function they guard
    parameter_type.inc_ref();
    fast.types[0] = reinterpret_cast<PyTypeObject*>(tensor_type.ptr());
    fast.types[1] = reinterpret_cast<PyTypeObject*>(parameter_type.ptr());
    fast.fn = reinterpret_cast<void* (*)(PyObject*)>(address);
  });
  m.def("run_passes",
        [](const std::string& text) { return print_graph(run_graph_pipeline(parse_graph(text), PipelineOptions{})); });
}
