#!/usr/bin/env bash
# Installs the Debian packages the test lanes (and, with "bench", the benchmarks) talk to.
# Tests that need a missing peer skip with the reason, so a machine without root still runs the rest.
set -u
want=(avahi-daemon avahi-utils dbus iproute2 fuse libfuse2 curl libdbus-1-dev libglib2.0-dev pkg-config)
[ "${1:-}" = bench ] && want+=(wrk)
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null 2>&1 \
        || echo "warning: could not install ${missing[*]}; the lanes that need them will skip"
else
    echo "note: not root; lanes needing ${missing[*]} will skip"
fi
exit 0
