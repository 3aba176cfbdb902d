// torch_tensor.h — reading a torch.Tensor's pointer, sizes, strides and dtype through the CPython API.
//
// kiln._C does not link libtorch (no ABI tie to one torch build), so a tensor is read as Python sees
// it. The attribute names are interned once: these reads are on every call of a compiled graph.
#pragma once
#include <Python.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>  // every TU that casts to std::string must see this caster

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kiln/driver/compiled_graph.h"
#include "kiln/importer/aten_importer.h"

namespace kiln::bindings {

namespace nb = nanobind;

struct TensorView {
  std::vector<int64_t> sizes, strides;
  TensorArg arg;
};

// Interned attribute names, created on first use (with the GIL held).
struct TensorNames {
  PyObject *shape, *stride, *data_ptr, *dtype;
  static const TensorNames& get() {
    static const TensorNames n{PyUnicode_InternFromString("shape"), PyUnicode_InternFromString("stride"),
                               PyUnicode_InternFromString("data_ptr"), PyUnicode_InternFromString("dtype")};
    return n;
  }
};

// torch.dtype objects are singletons: remember each one's kiln dtype by identity (formatting a dtype
// to text costs more than the rest of a read).
inline DType cached_dtype_of(PyObject* torch_dtype) {
  static std::vector<std::pair<PyObject*, DType>> seen;
  for (const auto& [obj, t] : seen)
    if (obj == torch_dtype) return t;
  DType t = dtype_from_torch(nb::cast<std::string>(nb::str(nb::handle(torch_dtype))));
  Py_INCREF(torch_dtype);
  seen.emplace_back(torch_dtype, t);
  return t;
}

// Appends the ints of a tuple (torch.Size is one) to out; false if it is not a tuple of ints.
inline bool append_ints(PyObject* tuple, std::vector<int64_t>& out) {
  if (!tuple || !PyTuple_Check(tuple)) return false;
  const Py_ssize_t n = PyTuple_GET_SIZE(tuple);
  for (Py_ssize_t i = 0; i < n; ++i) {
    const long long v = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
    if (v == -1 && PyErr_Occurred()) return false;
    out.push_back(v);
  }
  return true;
}

// PyTorch publishes, for compiled code, a C function that reads a tensor's data pointer
// (torch._C._dynamo.guards._torchinductor_pyobject_tensor_data_ptr, an address of void*(PyObject*)):
// a plain C signature, no link to libtorch. It skips t.data_ptr()'s method call and int object. Used
// only on objects whose type is exactly one of `types` (torch.Tensor, nn.Parameter): a subclass may
// have no storage of its own, and the Python call handles it (or raises).
struct FastDataPtr {
  void* (*fn)(PyObject*) = nullptr;
  PyTypeObject* types[2] = {nullptr, nullptr};
  static FastDataPtr& get() {
    static FastDataPtr f;
    return f;
  }
};

// The data pointer of tensor t.
inline void* tensor_data(PyObject* t) {
  const FastDataPtr& fast = FastDataPtr::get();
  if (fast.fn && (Py_TYPE(t) == fast.types[0] || Py_TYPE(t) == fast.types[1])) return fast.fn(t);
  nb::object p = nb::steal(PyObject_CallMethodNoArgs(t, TensorNames::get().data_ptr));
  if (!p.is_valid()) throw nb::python_error();
  const unsigned long long v = PyLong_AsUnsignedLongLong(p.ptr());
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) throw nb::python_error();
  return reinterpret_cast<void*>(static_cast<uintptr_t>(v));
}

// Fills v from tensor t; raises Python's error if t is not a tensor.
inline void read_tensor(PyObject* t, TensorView& v) {
  const TensorNames& names = TensorNames::get();
  v.sizes.clear();
  v.strides.clear();
  nb::object shape = nb::steal(PyObject_GetAttr(t, names.shape));
  nb::object strides = nb::steal(PyObject_CallMethodNoArgs(t, names.stride));
  nb::object dtype = nb::steal(PyObject_GetAttr(t, names.dtype));
  if (!dtype.is_valid() || !append_ints(shape.ptr(), v.sizes) || !append_ints(strides.ptr(), v.strides)) {
    if (PyErr_Occurred()) throw nb::python_error();
    throw nb::type_error("kiln: expected a torch.Tensor argument");
  }
  v.arg.data = tensor_data(t);
  v.arg.ndim = static_cast<int64_t>(v.sizes.size());
  v.arg.sizes = v.sizes.data();
  v.arg.strides = v.strides.data();
  v.arg.dtype = cached_dtype_of(dtype.ptr());
}

}  // namespace kiln::bindings
