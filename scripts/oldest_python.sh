#!/usr/bin/env bash
# The fast tests under the oldest Python transferkit supports (3.10), when this machine has one.
# PyTorch's CPU wheel cannot be installed for 3.10 here (PyPI's torch is the multi-GB CUDA build, and
# PyTorch's CPU index is out of reach), so this runs the tests that need no torch: the command line's
# parser and every command's --help, the typed options, the run specs and the config files
# (tests/test_torch_free.py, tests/test_options.py, tests/test_python310.py). The rest of src is checked
# for 3.10 statically (vermin and the 3.10 grammar, in tests/test_python310.py under the main venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=""
for exe in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
    if command -v "$exe" >/dev/null 2>&1 && "$exe" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        PY=$(command -v "$exe"); break
    fi
done
if [ -z "$PY" ]; then
    echo "oldest_python: no Python 3.10 interpreter on this machine; skipped"
    exit 0
fi
VENV=${VENV310:-.venv310}
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "pytest>=8" "numpy>=1.24" "tomli>=2" "pillow>=10" "pytest-timeout>=2.2"
# --noconftest: the suite's shared fixtures load torch; these tests use none of them
env -u PYTHONPATH -u PYTHONHOME PYTHONPATH=src "$VENV/bin/python" -m pytest -q -p no:cacheprovider --noconftest \
    -o addopts="--strict-markers --import-mode=importlib" -o timeout=0 \
    tests/test_torch_free.py tests/test_options.py
echo "oldest_python: passed under $("$VENV/bin/python" --version)"
