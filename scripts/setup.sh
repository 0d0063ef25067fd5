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
# pip install, quiet, without the registry mirror's "Location ... is ignored" noise; keeps pip's exit code.
pip_install() {
  "$VENV/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}
# The CPU wheel lies on these machines (/opt/wheels, or a PIP_FIND_LINKS folder): install it by path.
# Naming the file leaves no choice to the resolver; a plain `torch==2.13.0` can resolve to the
# multi-GB CUDA build from PyPI (it did with a newer pip), so pip itself is not upgraded either.
wheel=""
for dir in ${PIP_FIND_LINKS:-} /opt/wheels; do
  for f in "$dir"/torch-2.13.0+cpu-cp311-*.whl; do [ -f "$f" ] && wheel="$f" && break 2; done
done
if [ -n "$wheel" ]; then
  pip_install "$wheel"
else
  echo "[setup] no local CPU torch wheel; installing torch==2.13.0 from the PyTorch CPU index"
  pip_install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
    --extra-index-url https://pypi.org/simple
fi
"$VENV/bin/python" -W ignore -c "import torch,sys; v=torch.__version__; sys.exit(0 if v.startswith('2.13.0') and not torch.version.cuda else f'[setup] expected CPU torch 2.13.0, got {v} cuda={torch.version.cuda}')"
pip_install -e ".[dev]"
"$VENV/bin/python" -W ignore -c "import torch,sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else '[setup] an install step replaced torch: ' + torch.__version__)"
"$VENV/bin/mobstream" --help >/dev/null
echo "$want" > "$stamp"
echo "[setup] ready: $VENV/bin/mobstream"
