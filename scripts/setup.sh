#!/usr/bin/env bash
# Install what netids needs on Debian/Ubuntu, idempotently: system packages, then a virtualenv
# in .venv with the pinned Python packages. `--native` adds the desktop window (pywebview + Qt);
# `--dev` adds that and everything the test suite uses (attack tools, PostgreSQL, Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_APT=(libpcap0.8 iproute2 python3-venv gcc python3-dev)  # a C compiler: libinjection builds from source
NATIVE_APT=(libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-randr0
            libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libxkbfile1 libegl1
            libgl1 libgbm1 libnss3 libasound2 libxcomposite1 libxdamage1 libxrandr2 libxtst6
            libfontconfig1)
DEV_APT=(tcpdump tcpreplay nmap hping3 dsniff dnsmasq-base iperf3 ethtool iputils-ping curl wget
         dnsutils postgresql libcap2-bin procps util-linux xvfb imagemagick chromium
         chromium-driver openssh-server openssh-client hydra sshpass)
packages=("${RUNTIME_APT[@]}")
requirements=requirements.txt
case "${1:-}" in
    --native) packages+=("${NATIVE_APT[@]}"); requirements=requirements-native.txt ;;
    --dev) packages+=("${NATIVE_APT[@]}" "${DEV_APT[@]}"); requirements=requirements-dev.txt ;;
esac

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
stamp=".venv/.installed-$(cat requirements*.txt | sha1sum | cut -c1-12)-${requirements}"
if [[ ! -e "$stamp" ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
    touch "$stamp"
fi
