// boxed_call.h — kiln._C.BoxedCall: a compiled graph's whole common call path as one native call.
#pragma once
#include <nanobind/nanobind.h>

namespace kiln::bindings {
void bind_boxed_call(nanobind::module_& m);
}
