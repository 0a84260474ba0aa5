#!/usr/bin/env bash
# Installs the Python packages the tests use, if missing: selenium for the browser tests (4.51.0:
# newer ones need a certifi the offline registry lacks), and an independent Web Push
# implementation (http_ece, py-vapid) that decrypts and verifies what pincer sends.
set -euo pipefail
need=()
python3 -c 'import selenium, sys; sys.exit(selenium.__version__ != "4.51.0")' 2>/dev/null || need+=("selenium==4.51.0")
python3 -c 'import http_ece' 2>/dev/null || need+=("http_ece==1.2.1")
python3 -c 'import py_vapid' 2>/dev/null || need+=("py-vapid==1.9.6")
[ ${#need[@]} -eq 0 ] && exit 0
python3 -m pip install --quiet "${need[@]}"
