// error.cpp — the per-thread error message that generated code sets and the host reads back.
#include "kiln/runtime/kiln_runtime.h"

#include <string>

namespace {
// Per thread: a graph may run on several Python threads at once, each reading its own failure.
thread_local std::string tls_last_error;
}  // namespace

extern "C" {

void kiln_set_error(const char* message) { tls_last_error = message ? message : ""; }

const char* kiln_last_error(void) { return tls_last_error.c_str(); }

}  // extern "C"
