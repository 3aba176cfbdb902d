// error.h — the two kinds of failure: a user's (unsupported input; runs eagerly) and kiln's own (a bug).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace kiln {

// Something the user can act on: an unsupported op, dtype or shape, a missing compiler, a bad option.
// By default the affected part of the graph runs eagerly and the message is logged once.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

// A broken invariant inside kiln. Never expected by a test; always a bug to report.
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& what) : std::logic_error(what) {}
};

namespace detail {
inline void append_all(std::ostringstream&) {}
template <class T, class... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

template <class... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream os;
  detail::append_all(os, parts...);
  return os.str();
}

}  // namespace kiln

// KILN_CHECK(cond, parts...) guards kiln's own invariants; KILN_USER_CHECK guards what users pass.
#define KILN_CHECK(cond, ...)                                                                               \
  do {                                                                                                      \
    if (!(cond))                                                                                            \
      throw ::kiln::InternalError(                                                                          \
          ::kiln::str_cat("internal error at ", __FILE__, ":", __LINE__, ": ", #cond, " ", ##__VA_ARGS__)); \
  } while (0)
#define KILN_USER_CHECK(cond, ...)                                      \
  do {                                                                  \
    if (!(cond)) throw ::kiln::UserError(::kiln::str_cat(__VA_ARGS__)); \
  } while (0)
