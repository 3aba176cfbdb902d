#!/usr/bin/env bash
# dev.sh — set-up, benchmark and tests in one place: what the README's two commands run.
#   bash scripts/dev.sh bench [kiln.bench args]   # quick seed benchmark (eager / Inductor / kiln)
#   bash scripts/dev.sh test                      # style (clang-format, ruff), C++ units (ctest), lit, pytest
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
BUILD_DIR=$ROOT/build/cp311-cp311-linux_x86_64

setup() {
  [ -x "$PY" ] || python3 -m venv .venv
  # torch is pinned to the CPU build that lies on this machine's disk; the rest are small.
  "$PY" -m pip install -q torch==2.13.0 nanobind==3.1.0 scikit-build-core==1.1.2 pytest==9.2.0 lit==23.1.5 \
    filecheck==1.0.6 numpy matplotlib==3.10.8 tqdm==4.67.1 clang-format==21.1.8 ruff==0.14.0
  if ! [ -f /usr/include/gtest/gtest.h ]; then
    (apt-get update -qq && apt-get install -y -qq libgtest-dev >/dev/null) ||
      echo "warning: GoogleTest could not be installed; C++ unit tests are skipped"
  fi
  "$PY" -m pip install -q --no-build-isolation .
  BUILD_DIR=$(ls -d "$ROOT"/build/cp3*/ 2>/dev/null | head -1)
}

# The style every change keeps: .clang-format for C++, pyproject.toml's [tool.ruff] for Python.
lint() {
  local status=0
  git ls-files 'csrc/*.cpp' 'csrc/*.h' 'tools/*.cpp' 'tests/cpp/*.cpp' |
    xargs "$ROOT/.venv/bin/clang-format" --dry-run --Werror || {
    echo "C++ style: run \`.venv/bin/clang-format -i\` on the files above" >&2
    status=1
  }
  "$ROOT/.venv/bin/ruff" check python tests/python tools scripts || status=1
  return $status
}

run_tests() {
  local status=0
  lint || status=1
  if [ -f "$BUILD_DIR/CTestTestfile.cmake" ]; then
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j2 || status=1
  fi
  KILN_OPT="$BUILD_DIR/kiln-opt" PATH="$ROOT/.venv/bin:$PATH" "$ROOT/.venv/bin/lit" -q tests/lit || status=1
  (cd "$ROOT" && "$PY" -m pytest -q tests/python) || status=1
  return $status
}

cmd=${1:-test}
shift || true
case "$cmd" in
  setup) setup ;;
  lint) lint ;;
  bench) setup; exec "$PY" -m kiln.bench "$@" ;;
  test) setup; run_tests ;;
  *) echo "usage: bash scripts/dev.sh bench|test|setup|lint" >&2; exit 2 ;;
esac
