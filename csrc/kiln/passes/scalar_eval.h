// scalar_eval.h — pointwise ops evaluated on one scalar per operand, with PyTorch's semantics.
#pragma once
#include <optional>
#include <vector>

#include "kiln/ir/graph.h"

namespace kiln {

// A value of one dtype: floats in `f` (already rounded to the dtype), integers and bools in `i`.
struct Scalar {
  DType dtype = DType::F32;
  double f = 0;
  int64_t i = 0;

  // Reads a `full`'s value attribute (bool, int or float) as a value of `dtype`; nullopt when the
  // attribute does not denote one exactly (1.5 as an integer, 1e10 as i32).
  static std::optional<Scalar> from_attr(const Attr& value, DType dtype);
  Attr to_attr() const;  // float → double attr, integer → int attr, bool → bool attr
  bool is(double v) const { return is_floating(dtype) ? f == v : static_cast<double>(i) == v; }
};

// `op` applied to `args` (the operands' dtypes as the node's inputs have them), giving a value of
// `result` dtype. Floats are computed in double and rounded to the result dtype; integers in int64
// and wrapped to the result dtype. nullopt where the result is undefined or where kiln does not
// promise which of several answers eager gives (integer division by zero, NaN to integer, the sign
// of a zero from max/min/relu): such nodes are left for run time.
std::optional<Scalar> eval_pointwise(Op op, const std::vector<Scalar>& args, const Attrs& attrs, DType result);

}  // namespace kiln
