#!/usr/bin/env bash
# Creates .peer-venv with LibMultiLabel 0.10.0 for the side-by-side reference run
# (training/peer/libmultilabel.py). It is a separate venv on purpose: LibMultiLabel pins old
# torchmetrics/lightning versions that must not leak into the project's own dependencies.
# Idempotent: each step is skipped when its package already imports at the wanted version.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
VENV=${FMLC_PEER_VENV:-.peer-venv}
TORCH_VERSION=$(cat deploy/torch-version)  # the project's own pin
LML_VERSION=0.10.0

if [ ! -x "$VENV/bin/python" ]; then
    echo "[peer-setup] creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
PIP="$VENV/bin/pip"
VPY="$VENV/bin/python"

# torch first and pinned: otherwise LibMultiLabel's bare `torch` requirement may resolve to a
# multi-GB CUDA build on machines without a GPU.
if ! "$VPY" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH_VERSION'))" 2>/dev/null; then
    echo "[peer-setup] installing torch==$TORCH_VERSION"
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "$PIP" install -q "torch==$TORCH_VERSION"
    else
        # Prefer the CPU wheel index; fall back to the default resolution (which here finds a
        # local CPU build through pip's find-links).
        "$PIP" install -q --retries 0 --timeout 10 "torch==$TORCH_VERSION" \
            --index-url "${FMLC_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}" \
            --extra-index-url "${PIP_INDEX_URL:-https://pypi.org/simple}" 2>/dev/null \
            || "$PIP" install -q "torch==$TORCH_VERSION"
    fi
fi

# The [nn] extra brings lightning/torchmetrics for the neural networks; torch is repeated with its
# pin so the resolver cannot swap it. setuptools<81: torchmetrics 0.10.3 still imports
# pkg_resources, which setuptools 81 removed.
if ! "$VPY" -c "import importlib.metadata as m, sys; sys.exit(m.version('libmultilabel') != '$LML_VERSION')" \
        2>/dev/null || ! "$VPY" -c "import lightning, torchmetrics, pkg_resources" 2>/dev/null; then
    echo "[peer-setup] installing libmultilabel[nn]==$LML_VERSION"
    # pipefail keeps pip's exit status; the filter only hides this machine's notes about
    # missing local index folders.
    "$PIP" install -q "libmultilabel[nn]==$LML_VERSION" "torch==$TORCH_VERSION" 'setuptools<81' 2>&1 \
        | { grep -v "^WARNING: Location 'file://" || true; }
fi

# Import check of both halves of the API the peer script uses.
"$VPY" -W ignore -c "import libmultilabel.linear, libmultilabel.nn.nn_utils, torch; \
print('[peer-setup] ok: libmultilabel', __import__('importlib.metadata').metadata.version('libmultilabel'), \
'torch', torch.__version__)"
