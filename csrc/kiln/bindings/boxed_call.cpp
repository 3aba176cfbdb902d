// boxed_call.cpp — kiln._C.BoxedCall: the common call of a static graph as one native call.
//
// AOTAutograd calls a compiled graph "boxed": with a list of arguments it may clear. For a graph with
// static sizes whose outputs are all fresh tensors, BoxedCall does the whole call here: it checks each
// tensor input against the compiled dtype, sizes and strides, allocates the outputs with the given
// allocator, runs the graph with the GIL released, clears the list and returns the outputs. Anything
// else (an input in another layout, a wrong dtype) goes to the Python path it was given, unchanged.
#include "kiln/bindings/boxed_call.h"

#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <vector>

#include "kiln/bindings/torch_tensor.h"
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

class BoxedCall {
 public:
  // tensor_args: positions of the graph's tensor inputs in the argument list; outputs: per kiln output
  // (sizes, strides, dtype) for alloc; order: which kiln output each returned value is; slow: the
  // boxed Python path for calls this one does not take.
  BoxedCall(std::shared_ptr<CompiledGraph> graph, std::vector<int> tensor_args, nb::list outputs,
            std::vector<int> order, nb::object alloc, nb::object slow)
      : graph_(std::move(graph)), tensor_args_(std::move(tensor_args)), order_(std::move(order)),
        alloc_(std::move(alloc)), slow_(std::move(slow)) {
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
    for (nb::handle o : outputs) out_specs_.push_back(nb::borrow<nb::tuple>(o));
    for (int j : order_) KILN_USER_CHECK(j >= 0 && static_cast<size_t>(j) < out_specs_.size(), "kiln: bad output order");
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
    std::vector<void*> buffers(ni + no);
    for (size_t i = 0; i < ni; ++i) buffers[i] = tensor_data(PyList_GET_ITEM(list, tensor_args_[i]));
    std::vector<nb::object> outs(no);
    for (size_t j = 0; j < no; ++j) {
      PyObject* spec = out_specs_[j].ptr();
      PyObject* call_args[] = {PyTuple_GET_ITEM(spec, 0), PyTuple_GET_ITEM(spec, 1), PyTuple_GET_ITEM(spec, 2)};
      outs[j] = nb::steal(PyObject_Vectorcall(alloc_.ptr(), call_args, 3, nullptr));
      if (!outs[j].is_valid()) throw nb::python_error();
      buffers[ni + j] = tensor_data(outs[j].ptr());
    }
    {
      nb::gil_scoped_release release;
      graph_->run(buffers.data(), {});
    }
    PyList_SetSlice(list, 0, PyList_GET_SIZE(list), nullptr);  // let AOTAutograd's inputs die early
    nb::list result;
    for (int j : order_) result.append(outs[static_cast<size_t>(j)]);
    return result;
  }

 private:
  std::shared_ptr<CompiledGraph> graph_;
  std::vector<int> tensor_args_;
  std::vector<int> order_;
  nb::object alloc_, slow_;
  std::vector<ExpectedInput> inputs_;
  std::vector<nb::tuple> out_specs_;
};

}  // namespace

void bind_boxed_call(nb::module_& m) {
  // dynamic_attr: AOTAutograd reads `_boxed_call`, and the wrappers it builds copy the instance dict.
  nb::class_<BoxedCall>(m, "BoxedCall", nb::dynamic_attr())
      .def(nb::init<std::shared_ptr<CompiledGraph>, std::vector<int>, nb::list, std::vector<int>, nb::object,
                    nb::object>(),
           nb::arg("graph"), nb::arg("tensor_args"), nb::arg("outputs"), nb::arg("order"), nb::arg("alloc"),
           nb::arg("slow"))
      .def("__call__", &BoxedCall::call, nb::arg("args"));
}

}  // namespace kiln::bindings
