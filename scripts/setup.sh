#!/usr/bin/env bash
# Creates .venv and installs mobstream into it (idempotent: re-runs only when pyproject.toml changed).
# torch is installed first, pinned to the CPU build 2.13.0 that lies on these machines, so that no
# later resolver step can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=${MOBSTREAM_VENV:-.venv}
stamp="$VENV/.mobstream-installed"
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating $VENV with $($PY --version)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$VENV/bin/python" -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch,sys; v=torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else f'[setup] expected CPU torch 2.13.0, got {v} cuda={torch.version.cuda}')"
"$VENV/bin/python" -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else '[setup] an install step replaced torch: ' + torch.__version__)"
"$VENV/bin/mobstream" --help >/dev/null
echo "$want" > "$stamp"
echo "[setup] ready: $VENV/bin/mobstream"
