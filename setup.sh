#!/usr/bin/env bash
# One-step set-up on a fresh Debian machine: system packages, a virtual environment in
# .venv, and the project installed into it. Safe to run again: it only does what is
# missing, so a second run takes a few seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

DEB_PACKAGES=(ngspice libngspice0-dev dataset-fashion-mnist)
STAMP=".venv/.mixsig-installed"   # sha256 of pyproject.toml at the last successful install

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
    echo "setup: need to install Debian packages ($*) but this is not root and sudo is not available" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" -eq 0 ]; then
    "${SUDO[@]}" apt-get update -qq
    apt_updated=1
  fi
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

# 1. Debian packages (only those dpkg does not report as installed)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
  did_something=1
fi

# 2. a Python >= 3.11
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [ -z "$PYTHON" ] && ! command -v python3 >/dev/null 2>&1; then
  echo "setup: no python3 on this machine; installing Debian's python3 and python3-venv"
  apt_install python3 python3-venv
  did_something=1
  python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null && PYTHON=python3
fi
if [ -z "$PYTHON" ]; then
  echo "setup: Python >= 3.11 is required and none was found; install python3 (>= 3.11) or set PYTHON=/path/to/python" >&2
  exit 1
fi

# 3. the virtual environment
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating virtual environment .venv with $PYTHON"
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    apt_install python3-venv
    "$PYTHON" -m venv .venv
  fi
  did_something=1
fi

# 4. the project and its dependencies (again only when pyproject.toml changed)
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "setup: installing the project and its Python dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip || echo "setup: warning: could not upgrade pip; continuing" >&2
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$STAMP"
  did_something=1
fi

if [ "${did_something:-0}" -eq 0 ]; then
  echo "setup: everything already in place (Debian packages, .venv, project installed)"
else
  echo "setup: done"
fi
