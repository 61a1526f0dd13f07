#!/usr/bin/env bash
# Build llama-cpp-python (which vendors llama.cpp) from its PyPI sdist into the active Python environment, and
# print the vendored llama.cpp folder, the --llama-cpp-dir of scripts/verify_llamacpp.py. PyPI has only sdists
# of llama-cpp-python, so it compiles llama.cpp for the CPU: 5–9 minutes on 2 cores.
#
# On x86-64 it builds for AVX2 (-DGGML_NATIVE=OFF), not for the build machine's own instruction set: built
# natively on a CPU with AMX (amx_int8, e.g. Sapphire Rapids, as the project's machines are), llama.cpp 0.3.36
# repacks Q4_1 weights for AMX and llama_decode then crashes with a segmentation fault (seen on the SmolLM2 GGUF,
# with or without an adapter); AVX2 runs everywhere x86-64 runs llama.cpp at speed.
#
# Usage: scripts/build_llamacpp.sh [FOLDER]   (default: $ASYMLORA_CACHE or ~/.cache/asymlora, + /llama-cpp-python)
set -euo pipefail
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e  # the sdist as PyPI serves it
DEST=${1:-${ASYMLORA_CACHE:-$HOME/.cache/asymlora}/llama-cpp-python}
SDIST="$DEST/llama_cpp_python-$VERSION.tar.gz"
mkdir -p "$DEST"
if [ ! -f "$SDIST" ]; then
  python -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DEST" >&2
fi
echo "$SHA256  $SDIST" | sha256sum --check --quiet - >&2 || {
  echo "error: $SDIST does not have the pinned sha256; delete it and run again" >&2; exit 1; }
SRC="$DEST/llama_cpp_python-$VERSION"
[ -d "$SRC" ] || tar xzf "$SDIST" -C "$DEST"
start=$(date +%s)
ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
if [ "$(uname -m)" = x86_64 ]; then
  ARGS="$ARGS -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi
python -m pip uninstall -y -q llama-cpp-python >&2 || true  # a build with other flags must not be kept
CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CMAKE_ARGS="$ARGS" python -m pip install "$SRC" >&2
echo "built llama-cpp-python $VERSION in $(( $(date +%s) - start )) s" >&2
echo "$SRC/vendor/llama.cpp"
