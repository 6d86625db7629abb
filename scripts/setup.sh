#!/usr/bin/env bash
# Install what netids needs on Debian/Ubuntu, idempotently: system packages, then a virtualenv
# in .venv with the pinned Python packages. `--dev` adds what the test suite uses.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_APT=(libpcap0.8 iproute2 python3-venv)
DEV_APT=(tcpdump tcpreplay nmap hping3 dsniff dnsmasq-base iperf3 ethtool iputils-ping curl wget
         dnsutils postgresql libcap2-bin procps)
packages=("${RUNTIME_APT[@]}")
requirements=requirements.txt
if [[ "${1:-}" == "--dev" ]]; then
    packages+=("${DEV_APT[@]}")
    requirements=requirements-dev.txt
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
stamp=".venv/.installed-$(sha1sum requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-${requirements}"
if [[ ! -e "$stamp" ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
    touch "$stamp"
fi
