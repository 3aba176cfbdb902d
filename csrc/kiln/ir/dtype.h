// dtype.h — element types kiln computes in, their names and PyTorch's promotion lattice.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace kiln {

enum class DType : uint8_t { Bool, I32, I64, F32, F64 };

std::string_view dtype_name(DType t);       // "f32" — the IR text form
std::string_view dtype_c_type(DType t);     // "float" — generated code
DType dtype_from_name(std::string_view s);  // throws UserError for an unknown name
int64_t dtype_size(DType t);
inline bool is_floating(DType t) { return t == DType::F32 || t == DType::F64; }
inline bool is_integral(DType t) { return t == DType::I32 || t == DType::I64; }
// PyTorch's promote_types for two tensor dtypes of the same category rank.
DType promote(DType a, DType b);

}  // namespace kiln
