// library.cpp — dlopen/dlsym/dlclose with kiln's errors.
#include "kiln/jit/library.h"

#include <dlfcn.h>

#include "kiln/support/error.h"

namespace kiln::jit {

Library::Library(std::string path) : path_(std::move(path)) {
  handle_ = ::dlopen(path_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle_) {
    const char* why = ::dlerror();
    throw UserError(str_cat("kiln could not load the compiled graph ", path_, ": ", why ? why : "unknown error"));
  }
}

Library::~Library() {
  if (handle_) ::dlclose(handle_);
}

void* Library::find_symbol(const char* name) const noexcept {
  ::dlerror();  // clear any stale error
  return ::dlsym(handle_, name);
}

void* Library::symbol(const char* name) const {
  void* address = find_symbol(name);
  KILN_CHECK(address != nullptr, "symbol '", name, "' not found in ", path_);
  return address;
}

}  // namespace kiln::jit
