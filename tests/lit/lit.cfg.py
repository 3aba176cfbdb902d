# lit.cfg.py — golden tests for kiln-opt. Run: .venv/bin/lit -v tests/lit (KILN_OPT=/path/to/kiln-opt to pick one).
import glob
import os
import shutil
import sys

import lit.formats

config.name = "kiln"
config.test_format = lit.formats.ShTest(execute_external=False)  # lit's own shell: `not`, pipes, pipefail
config.suffixes = [".kir"]
config.excludes = ["Inputs"]  # inputs of other tests, not tests
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
repo_root = os.path.dirname(os.path.dirname(config.test_source_root))
# Keep lit's Output/ scratch files out of the source tree (build/ is ignored by git).
config.test_exec_root = os.path.join(repo_root, "build", "lit")


def find_kiln_opt():
    explicit = os.environ.get("KILN_OPT")
    if explicit:
        return explicit
    found = [
        p for p in glob.glob(os.path.join(repo_root, "build", "**", "kiln-opt"), recursive=True)
        if os.path.isfile(p) and os.access(p, os.X_OK)
    ]
    if not found:
        lit_config.fatal("kiln-opt not found under build/: build it (cmake --build build) or set KILN_OPT")
    return max(found, key=os.path.getmtime)  # the most recently built one


config.kiln_opt = find_kiln_opt()
config.substitutions.append(("%kiln-opt", config.kiln_opt))

# FileCheck is the PyPI `filecheck` package, installed beside the Python running lit.
search_path = os.pathsep.join([os.path.dirname(sys.executable), os.path.join(repo_root, ".venv", "bin"),
                               os.environ.get("PATH", "")])
if shutil.which("filecheck", path=search_path) is None:
    lit_config.fatal("filecheck not found: pip install filecheck")
config.environment["PATH"] = search_path
lit_config.note(f"kiln-opt: {config.kiln_opt}")
