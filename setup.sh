#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with the project and its tools (tests, documentation).
# hydra-optuna-sweeper 1.3 still declares optuna<3 in its metadata although its code runs
# on modern optuna; it is installed without its dependency pins so that optuna>=4 stays.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade --quiet pip
"$VENV/bin/python" -m pip install --quiet -e ".[dev,docs]"
"$VENV/bin/python" -m pip install --quiet --no-deps "hydra-optuna-sweeper==1.3.0"
"$VENV/bin/python" -c "import torch, torchvision, hydra, optuna; print(f'poolstudy ready: torch {torch.__version__}, torchvision {torchvision.__version__}, hydra {hydra.__version__}, optuna {optuna.__version__}')"
echo "Activate with: source $VENV/bin/activate"
