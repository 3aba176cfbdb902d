// boxed_call.cpp — kiln._C.BoxedCall: the common call of a static graph as one native call.
//
// AOTAutograd calls a compiled graph "boxed": with a list of arguments it may clear. For a graph with
// static sizes, BoxedCall does the whole call here: it checks each tensor input against the compiled
// dtype, sizes and strides, allocates the outputs with the given allocator, runs the graph with the GIL
// released, makes the outputs that are views, clears the list and returns the graph's results:
// kiln outputs, arguments returned as they are (a forward graph's inputs saved for the backward) and
// constants (a backward graph's None gradients). Anything else (an input in another layout, a wrong
// dtype) goes to the Python path it was given, unchanged. Graphs that touch under 64 KiB keep the GIL.
#include "kiln/bindings/boxed_call.h"

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kiln/bindings/torch_tensor.h"
#include "kiln/ir/dtype.h"
#include "kiln/support/error.h"

namespace kiln::bindings {
namespace {

// What one input must look like for the fast path (strides only where the size exceeds 1).
struct ExpectedInput {
  DType dtype;
  std::vector<int64_t> sizes, strides;
};

// Whether tensor t matches e exactly (a non-tensor, or an error while reading, is a mismatch).
bool matches(PyObject* t, const ExpectedInput& e) {
  const TensorNames& names = TensorNames::get();
  nb::object dtype = nb::steal(PyObject_GetAttr(t, names.dtype));
  if (!dtype.is_valid() || cached_dtype_of(dtype.ptr()) != e.dtype) return false;
  nb::object shape = nb::steal(PyObject_GetAttr(t, names.shape));
  if (!shape.is_valid() || !PyTuple_Check(shape.ptr())) return false;
  const Py_ssize_t rank = PyTuple_GET_SIZE(shape.ptr());
  if (rank != static_cast<Py_ssize_t>(e.sizes.size())) return false;
  bool strided = false;
  for (Py_ssize_t d = 0; d < rank; ++d) {
    if (PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), d)) != e.sizes[static_cast<size_t>(d)]) return false;
    strided = strided || e.sizes[static_cast<size_t>(d)] > 1;
  }
  if (!strided) return true;
  nb::object strides = nb::steal(PyObject_CallMethodNoArgs(t, names.stride));
  if (!strides.is_valid() || !PyTuple_Check(strides.ptr()) || PyTuple_GET_SIZE(strides.ptr()) != rank) return false;
  for (Py_ssize_t d = 0; d < rank; ++d)
    if (e.sizes[static_cast<size_t>(d)] > 1 &&
        PyLong_AsLongLong(PyTuple_GET_ITEM(strides.ptr(), d)) != e.strides[static_cast<size_t>(d)])
      return false;
  return true;
}

// n elements on the stack when n <= N (every graph's call but the largest), else on the heap: the
// call path makes no allocation of its own.
template <class T, size_t N>
class SmallArray {
 public:
  explicit SmallArray(size_t n) : p_(n <= N ? inline_.data() : (heap_ = std::make_unique<T[]>(n)).get()) {}
  T& operator[](size_t i) { return p_[i]; }
  T* data() { return p_; }

 private:
  std::array<T, N> inline_{};
  std::unique_ptr<T[]> heap_;
  T* p_;
};

// How one kiln output comes to be: a fresh tensor (alloc(sizes, strides, dtype)) the graph writes, or
// a view (as_strided) of an input or of an earlier output, made after the run.
struct OutputSpec {
  bool view = false;
  nb::tuple alloc_args;   // (sizes, strides, dtype)
  bool of_input = false;  // view: of tensor input `base` (else of output `base`)
  int64_t base = 0, offset = 0;
  nb::object sizes, strides;
};

// One returned value: kiln output `index`, argument `index`, or a constant.
struct Result {
  enum Kind { Output = 0, Argument = 1, Constant = 2 } kind;
  int64_t index = 0;
  nb::object constant;
};

class BoxedCall {
 public:
  // tensor_args: positions of the graph's tensor inputs in the argument list; outputs: per kiln output
  // (0, sizes, strides, dtype) for alloc, or (1, of_input, base, sizes, strides, offset) for a view
  // made with as_strided; results: per returned value (kind, index or constant) with the kinds of
  // Result; slow: the boxed Python path for calls this one does not take.
  BoxedCall(std::shared_ptr<CompiledGraph> graph, std::vector<int> tensor_args, nb::list outputs, nb::list results,
            nb::object alloc, nb::object as_strided, nb::object slow)
      : graph_(std::move(graph)),
        tensor_args_(std::move(tensor_args)),
        alloc_(std::move(alloc)),
        as_strided_(std::move(as_strided)),
        slow_(std::move(slow)) {
    const Graph& g = graph_->graph();
    KILN_USER_CHECK(g.symbols.empty(), "kiln: BoxedCall needs a graph with static sizes");
    KILN_USER_CHECK(tensor_args_.size() == g.inputs().size(), "kiln: BoxedCall got ", tensor_args_.size(),
                    " tensor positions for ", g.inputs().size(), " inputs");
    for (const GraphInput& gi : g.inputs()) {
      const TensorType& t = g.type(gi.value);
      ExpectedInput e{t.dtype, {}, {}};
      for (size_t d = 0; d < t.sizes.size(); ++d) {
        e.sizes.push_back(t.sizes[d].const_value());
        e.strides.push_back(gi.strides[d].is_const() ? gi.strides[d].const_value() : 0);
      }
      inputs_.push_back(std::move(e));
    }
    // A graph that touches little memory runs in a few µs: releasing and retaking the GIL around it
    // (about 0.2 µs) would be a tenth of the whole call, and no other thread waits long on it.
    int64_t bytes = 0;
    auto bytes_of = [&](ValueId v) { return g.type(v).numel().const_value() * dtype_size(g.type(v).dtype); };
    for (const GraphInput& gi : g.inputs()) bytes += bytes_of(gi.value);
    for (const GraphOutput& go : g.outputs()) bytes += bytes_of(go.value);
    release_gil_ = bytes > kHoldGilBytes;
    for (nb::handle h : outputs) {
      nb::tuple o = nb::borrow<nb::tuple>(h);
      OutputSpec spec;
      spec.view = nb::cast<int>(o[0]) == 1;
      if (!spec.view) {
        spec.alloc_args = nb::make_tuple(o[1], o[2], o[3]);
      } else {
        spec.of_input = nb::cast<bool>(o[1]);
        spec.base = nb::cast<int64_t>(o[2]);
        spec.sizes = nb::borrow(o[3]);
        spec.strides = nb::borrow(o[4]);
        spec.offset = nb::cast<int64_t>(o[5]);
      }
      out_specs_.push_back(std::move(spec));
    }
    // Views are made in order after the run: a view's base is an input, a fresh output, or an earlier view.
    for (size_t j = 0; j < out_specs_.size(); ++j) {
      const OutputSpec& v = out_specs_[j];
      if (!v.view) continue;
      const size_t bound = v.of_input ? tensor_args_.size() : out_specs_.size();
      KILN_USER_CHECK(v.base >= 0 && static_cast<size_t>(v.base) < bound, "kiln: bad view base");
      KILN_USER_CHECK(v.of_input || !out_specs_[static_cast<size_t>(v.base)].view || static_cast<size_t>(v.base) < j,
                      "kiln: a view of a later view");
    }
    for (nb::handle h : results) {
      nb::tuple r = nb::borrow<nb::tuple>(h);
      const int kind = nb::cast<int>(r[0]);
      KILN_USER_CHECK(kind >= Result::Output && kind <= Result::Constant, "kiln: bad result kind ", kind);
      Result res{static_cast<Result::Kind>(kind), 0, {}};
      if (res.kind == Result::Constant) {
        res.constant = nb::borrow(r[1]);
      } else {
        res.index = nb::cast<int64_t>(r[1]);
        const size_t bound = res.kind == Result::Output ? out_specs_.size() : SIZE_MAX;
        KILN_USER_CHECK(res.index >= 0 && static_cast<size_t>(res.index) < bound, "kiln: bad result index");
      }
      results_.push_back(std::move(res));
    }
  }

  nb::object call(nb::list args) {
    PyObject* list = args.ptr();
    const size_t ni = tensor_args_.size(), no = out_specs_.size();
    for (size_t i = 0; i < ni; ++i) {
      const int pos = tensor_args_[i];
      if (pos >= PyList_GET_SIZE(list) || !matches(PyList_GET_ITEM(list, pos), inputs_[i])) {
        PyErr_Clear();  // a failed read is a mismatch; the Python path says what is wrong
        return slow_(args);
      }
    }
    SmallArray<void*, 32> buffers(ni + no);
    for (size_t i = 0; i < ni; ++i) buffers[i] = tensor_data(PyList_GET_ITEM(list, tensor_args_[i]));
    SmallArray<nb::object, 8> outs(no);
    for (size_t j = 0; j < no; ++j) {
      if (out_specs_[j].view) continue;  // the graph does not write views (nullptr buffer)
      PyObject* spec = out_specs_[j].alloc_args.ptr();
      PyObject* call_args[] = {PyTuple_GET_ITEM(spec, 0), PyTuple_GET_ITEM(spec, 1), PyTuple_GET_ITEM(spec, 2)};
      outs[j] = nb::steal(PyObject_Vectorcall(alloc_.ptr(), call_args, 3, nullptr));
      if (!outs[j].is_valid()) throw nb::python_error();
      buffers[ni + j] = tensor_data(outs[j].ptr());
    }
    if (release_gil_) {
      nb::gil_scoped_release release;
      graph_->run(buffers.data(), {});
    } else {
      graph_->run(buffers.data(), {});
    }
    for (size_t j = 0; j < no; ++j) {
      const OutputSpec& v = out_specs_[j];
      if (!v.view) continue;
      nb::handle base = v.of_input ? nb::handle(PyList_GET_ITEM(list, tensor_args_[static_cast<size_t>(v.base)]))
                                   : nb::handle(outs[static_cast<size_t>(v.base)]);
      const int64_t offset = nb::cast<int64_t>(base.attr("storage_offset")()) + v.offset;
      outs[j] = as_strided_(base, v.sizes, v.strides, offset);
    }
    nb::list result = nb::steal<nb::list>(PyList_New(static_cast<Py_ssize_t>(results_.size())));
    if (!result.is_valid()) throw nb::python_error();
    for (size_t k = 0; k < results_.size(); ++k) {
      const Result& r = results_[k];
      nb::object value;
      if (r.kind == Result::Output) {
        value = outs[static_cast<size_t>(r.index)];
      } else if (r.kind == Result::Argument) {
        if (r.index >= PyList_GET_SIZE(list)) throw UserError("kiln: a returned argument is missing");
        value = nb::borrow(PyList_GET_ITEM(list, r.index));
      } else {
        value = r.constant;
      }
      PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(k), value.release().ptr());  // steals it
    }
    PyList_SetSlice(list, 0, PyList_GET_SIZE(list), nullptr);  // let AOTAutograd's inputs die early
    return result;
  }

 private:
  std::shared_ptr<CompiledGraph> graph_;
  std::vector<int> tensor_args_;
  nb::object alloc_, as_strided_, slow_;
  std::vector<Result> results_;
  std::vector<ExpectedInput> inputs_;
  std::vector<OutputSpec> out_specs_;
  bool release_gil_ = true;
  static constexpr int64_t kHoldGilBytes = 64 << 10;  // inputs and outputs together
};

// BoxedCall's tp_call: the call goes straight here, not through a bound `__call__` method and
// nanobind's argument dispatch (measured 0.05-0.1 µs of a one-op graph's call). Errors become Python
// exceptions as the module's translator makes them.
PyObject* boxed_call_slot(PyObject* self, PyObject* args, PyObject* kwargs) {
  if ((kwargs && PyDict_GET_SIZE(kwargs) != 0) || PyTuple_GET_SIZE(args) != 1 ||
      !PyList_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "kiln: BoxedCall takes one list of arguments");
    return nullptr;
  }
  try {
    return nb::inst_ptr<BoxedCall>(self)->call(nb::borrow<nb::list>(PyTuple_GET_ITEM(args, 0))).release().ptr();
  } catch (nb::python_error& e) {
    e.restore();
  } catch (const UserError& e) {
    PyErr_SetString(PyExc_ValueError, (std::string("[kiln user error] ") + e.what()).c_str());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, (std::string("[kiln internal error] ") + e.what()).c_str());
  }
  return nullptr;
}

PyType_Slot boxed_call_slots[] = {{Py_tp_call, reinterpret_cast<void*>(boxed_call_slot)}, {0, nullptr}};

}  // namespace

void bind_boxed_call(nb::module_& m) {
  // dynamic_attr: AOTAutograd reads `_boxed_call`, and the wrappers it builds copy the instance dict.
  nb::class_<BoxedCall>(m, "BoxedCall", nb::dynamic_attr(), nb::type_slots(boxed_call_slots))
      .def(nb::init<std::shared_ptr<CompiledGraph>, std::vector<int>, nb::list, nb::list, nb::object, nb::object,
                    nb::object>(),
           nb::arg("graph"), nb::arg("tensor_args"), nb::arg("outputs"), nb::arg("results"), nb::arg("alloc"),
           nb::arg("as_strided"), nb::arg("slow"));
}

}  // namespace kiln::bindings
