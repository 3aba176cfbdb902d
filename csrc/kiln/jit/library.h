// library.h — a loaded shared object: dlopen on construction, dlclose on destruction.
#pragma once
#include <string>

namespace kiln::jit {

class Library {
 public:
  // RTLD_NOW (an unresolved symbol fails here, not mid-run) | RTLD_LOCAL (graphs never see each
  // other's symbols). Throws kiln::UserError with dlerror()'s text when the loader refuses.
  explicit Library(std::string path);
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  // The address of an exported symbol; throws kiln::InternalError when it is missing (the code
  // generator and its caller disagree about the entry point's name).
  void* symbol(const char* name) const;
  void* find_symbol(const char* name) const noexcept;  // nullptr when missing

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  void* handle_ = nullptr;
};

}  // namespace kiln::jit
