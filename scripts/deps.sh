#!/usr/bin/env bash
# deps.sh - installs (as root) or names (otherwise) the Debian packages
# Paramount needs to build, run and test.  Idempotent: installs only what
# is missing, and runs `apt-get update` only when something is.
#   scripts/deps.sh          build + run dependencies
#   scripts/deps.sh --test   also what the test suite needs
set -euo pipefail

pkgs=(build-essential cmake pkg-config libjson-c-dev libyaml-dev
      libopenmpi-dev openmpi-bin libdnnl-dev libpng-dev libjpeg-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(clang gfortran python3 python3-numpy python3-torch chromium)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "paramount: missing Debian packages: ${missing[*]}" >&2
  echo "paramount: install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "paramount: installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
