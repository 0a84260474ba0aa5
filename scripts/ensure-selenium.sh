#!/usr/bin/env bash
# Installs the Python selenium the browser tests use, if missing (4.51.0: newer ones need a
# certifi the offline registry lacks).
set -euo pipefail
want=4.51.0
have=$(python3 -c 'import selenium; print(selenium.__version__)' 2>/dev/null || true)
[ "$have" = "$want" ] && exit 0
python3 -m pip install --quiet "selenium==$want"
