#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it. Idempotent: a second run only
# re-installs the project itself. torch is installed first and pinned, because a bare `torch`
# requirement resolves to a multi-GB CUDA build on machines that have no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${FMLC_VENV:-.venv}
EXTRAS=${1:-local}
# The one torch pin, shared with deploy/Dockerfile.
TORCH_VERSION=$(cat deploy/torch-version)

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
PIP="$VENV/bin/pip"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "[setup] CUDA present: installing torch with CUDA"
        "$PIP" install -q "torch==$TORCH_VERSION"
    else
        echo "[setup] no CUDA: installing the CPU build of torch first"
        "$PIP" install -q --retries 0 --timeout 10 "torch==$TORCH_VERSION" --index-url "${FMLC_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" \
            --extra-index-url "${PIP_INDEX_URL:-https://pypi.org/simple}" 2>/dev/null \
            || "$PIP" install -q "torch==$TORCH_VERSION"
    fi
fi
stamp="$VENV/.fmlc-installed-$EXTRAS"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing fmlc[$EXTRAS]"
    "$PIP" install -q -e ".[$EXTRAS]" 2>&1 | grep -v '^WARNING: Location' || true
    "$VENV/bin/python" -c "import fmlc" 
    touch "$stamp"
fi
