#!/usr/bin/env bash
# Sets up the project's Python environment: <repo>/.venv with the pinned
# third-party pools of targets/python/requirements.txt, and a .pth file so
# `.venv/bin/python -m poolchaos_targets` finds the adapter without PYTHONPATH.
#
# Idempotent: a venv that already has these exact pins is left alone (a stamp
# file holds the requirements' checksum); a broken or stale one is repaired.
# Usage: targets/python/setup.sh   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
requirements="$here/requirements.txt"
stamp="$venv/.poolchaos-requirements.sha256"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
    && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "python-setup: $venv is up to date ($("$venv/bin/python" --version))"
    exit 0
fi

if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    echo "python-setup: creating $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet --require-hashes -r "$requirements"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$here" > "$site/poolchaos_targets.pth"
echo "$want" > "$stamp"
"$venv/bin/python" -c 'import loky, pebble, billiard, poolchaos_targets
print("python-setup: ready:", "loky", loky.__version__, "pebble", pebble.__version__, "billiard", billiard.__version__)'
