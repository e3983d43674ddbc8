#!/bin/sh
# What `make setup` needs outside pip, checked before anything is installed: each missing
# piece is one line naming the Debian/Ubuntu package that provides it. Exit 1 if any is missing.
# Usage: sh requirements/prereqs.sh [PYTHON]   (PYTHON defaults to python3)
python=${1:-python3}
missing=0
need() {  # need WHAT INSTALL-COMMAND
    echo "missing: $1 (install: $2)" >&2
    missing=1
}
if ! command -v "$python" >/dev/null 2>&1; then
    need "$python" "apt-get install -y python3.11 python3.11-venv, or pyenv install 3.11"
elif ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    need "Python 3.11 (found $("$python" -V 2>&1); set PYTHON=python3.11)" "apt-get install -y python3.11 python3.11-venv"
elif ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need "Python's venv and ensurepip modules" "apt-get install -y python3.11-venv"
fi
command -v git >/dev/null 2>&1 || need "git" "apt-get install -y git"
command -v make >/dev/null 2>&1 || need "make" "apt-get install -y make"
# The CPU stages' C++ kernels, the native runner and libedge4k (C++17, CMake >= 3.19, zlib).
if ! command -v c++ >/dev/null 2>&1; then
    need "a C++17 compiler (c++)" "apt-get install -y g++"
elif ! printf '#include <zlib.h>\nint main() { return zlibVersion() == 0; }\n' \
        | c++ -std=c++17 -x c++ - -fsyntax-only >/dev/null 2>&1; then
    need "zlib headers (zlib.h)" "apt-get install -y zlib1g-dev"
fi
if ! command -v cmake >/dev/null 2>&1; then
    need "cmake >= 3.19" "apt-get install -y cmake"
else
    version=$(cmake --version | sed -n 's/^cmake version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
    set -- $version
    if [ "${1:-0}" -lt 3 ] || { [ "${1:-0}" -eq 3 ] && [ "${2:-0}" -lt 19 ]; }; then
        need "cmake >= 3.19 (found ${1:-?}.${2:-?})" "pip install cmake, or apt-get install -y cmake from a newer release"
    fi
fi
exit $missing
