#!/usr/bin/env bash
# Sets up the project's Python environments with the pinned third-party pools
# of targets/python/requirements.txt, and a .pth file so
# `<venv>/bin/python -m poolchaos_targets` finds the adapter without PYTHONPATH:
#
#   targets/python/setup.sh              <repo>/.venv, with $PYTHON (default python3): what runs by default
#   targets/python/setup.sh 3.12 3.13    <repo>/.venvs/3.12 and .venvs/3.13, each with that interpreter
#                                        (pyenv's, else python3.N on PATH): what `poolchaos run --python` runs
#
# Idempotent: a venv that already has these exact pins is left alone (a stamp
# file holds the requirements' checksum); a broken or stale one is repaired.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
requirements="$here/requirements.txt"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

# make_venv DIR PYTHON: DIR holds the pins, made with PYTHON if it must be (re)made.
make_venv() {
    local venv="$1" python="$2" stamp="$1/.poolchaos-requirements.sha256"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null \
        && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "python-setup: $venv is up to date ($("$venv/bin/python" --version))"
        return
    fi
    if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
        echo "python-setup: creating $venv with $("$python" --version 2>&1)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --require-hashes -r "$requirements"
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$here" > "$site/poolchaos_targets.pth"
    echo "$want" > "$stamp"
    "$venv/bin/python" -c 'import loky, pebble, billiard, poolchaos_targets, sys
print("python-setup: ready:", sys.executable, sys.version.split()[0], "loky", loky.__version__, "pebble", pebble.__version__, "billiard", billiard.__version__)'
}

# interpreter 3.N: the newest pyenv 3.N.x, else python3.N on PATH if it runs.
interpreter() {
    local version="$1" candidate
    for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$version".* 2>/dev/null | sort -V -r); do
        if [ -x "$candidate/bin/python$version" ]; then
            echo "$candidate/bin/python$version"
            return
        fi
    done
    if "python$version" -c 'import sys' >/dev/null 2>&1; then
        command -v "python$version"
        return
    fi
    echo "python-setup: no Python $version here (looked in pyenv's versions and for python$version on PATH)" >&2
    return 1
}

if [ "$#" -eq 0 ]; then
    make_venv "$repo/.venv" "${PYTHON:-python3}"
fi
for version in "$@"; do
    if ! [[ "$version" =~ ^3\.[0-9]+$ ]]; then
        echo "python-setup: $version is not a Python version like 3.12" >&2
        exit 2
    fi
    python="$(interpreter "$version")"
    make_venv "$repo/.venvs/$version" "$python"
done
