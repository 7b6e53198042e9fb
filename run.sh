#!/usr/bin/env bash
# Cloudrone's one entry point. Every command installs what it needs first
# (scripts/setup.sh: Docker engine, package cache, virtualenv, drone image),
# reusing whatever is already there.
#
#   ./run.sh demo     the demo mission: three simulated drones, a page, a phone on each access point
#   ./run.sh test     lint, unit and integration tests, molecule (about 30 minutes)
#   ./run.sh lint     ruff, yamllint, ansible-lint, syntax check only
#   ./run.sh down     take the demo fleet down (mission down --purge)
#   ./run.sh setup    only install what the others need
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
VENV=${CLOUDRONE_VENV:-$PWD/.venv}
export PATH="$VENV/bin:$PATH"

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup)
    scripts/setup.sh
    ;;
  demo)
    scripts/setup.sh
    echo "==> cloudrone_cli mission up (missions/demo)"
    "$VENV/bin/cloudrone_cli" mission up "$@"
    ;;
  test)
    CLOUDRONE_SETUP_ALL_SUITES=1 scripts/setup.sh
    echo "==> pytest (lint, unit, integration, molecule; two workers: molecule beside the rest)"
    "$VENV/bin/python" -m pytest -n 2 "$@"
    ;;
  lint)
    # no engine, no root: the virtualenv is all lint needs
    CLOUDRONE_SETUP_ONLY_VENV=1 scripts/setup.sh
    "$VENV/bin/python" -m pytest tests/unit/test_lint.py "$@"
    ;;
  down)
    "$VENV/bin/cloudrone_cli" mission down --purge "$@"
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [ "$cmd" = help ] || exit 2
    ;;
esac
