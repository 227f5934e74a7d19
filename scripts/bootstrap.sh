#!/usr/bin/env bash
# Install what the build needs on Debian 12: missing apt packages, then the pinned venv.
# Idempotent and quick when everything is there, so every make target can run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=$(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages: ${missing[*]} — run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing ${missing[*]}" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv is rebuilt when requirements.txt or pyproject.toml changes (their hash is kept inside
# the venv).
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: creating .venv from requirements.txt" >&2
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  # Every pin carries the sha256 of its wheel: pip refuses a file whose hash differs and any
  # package (a dependency too) that requirements.txt does not pin with a hash.
  .venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements.txt
  # compat mode puts the checkout on sys.path, so packages generated later (oneproto/, by
  # `doit proto`) import too; the default editable finder only maps what exists now.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e . \
      --config-settings editable_mode=compat
  echo "$want" > .venv/.requirements.sha256
fi
