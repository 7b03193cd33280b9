#!/usr/bin/env bash
# Make `prometheus` and `promtool` available for the integration tests (idempotent).
#
#   bash deploy/prometheus/install.sh
#
# - Both on PATH already: nothing to do.
# - Root with apt-get (Debian/Ubuntu): install the distribution's package, and make sure the
#   service the package may start is not left running (tests start their own, on 127.0.0.1).
# - Otherwise: say how to install them and exit 0, so that the unit tests still run
#   (the integration tests then skip, or fail under CI=true).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have prometheus && have promtool; then
    echo "prometheus and promtool found: $(command -v prometheus), $(command -v promtool)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ] && have apt-get; then
    echo "installing prometheus (and promtool) with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq prometheus >/dev/null
    # The package may have started its service (listening on 0.0.0.0:9090, and the node
    # exporter on 9100): stop it and keep it from starting at boot.
    for service in prometheus prometheus-node-exporter; do
        if have systemctl && systemctl is-active --quiet "$service" 2>/dev/null; then
            systemctl stop "$service" || true
            systemctl disable "$service" >/dev/null 2>&1 || true
        fi
        if have service; then
            service "$service" stop >/dev/null 2>&1 || true
        fi
    done
    # Without an init system, a daemon started by the package's scripts runs as this user.
    for binary in /usr/bin/prometheus /usr/bin/prometheus-node-exporter; do
        for pid in $(pgrep -x -f "$binary.*" 2>/dev/null || true); do
            if [ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" = "$binary" ] \
                && [ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = 1 ]; then
                kill "$pid" 2>/dev/null || true
            fi
        done
    done
    have prometheus && have promtool && exit 0
    echo "apt-get ran but prometheus/promtool are still not on PATH" >&2
    exit 0
fi

cat <<'MSG'
prometheus/promtool not found and cannot be installed automatically here (not root, or no apt-get).
Install them to run the integration tests, for example:
  - Debian/Ubuntu:  sudo apt-get install prometheus
  - macOS:          brew install prometheus
  - any Linux:      https://prometheus.io/download/ (unpack; put prometheus and promtool on PATH)
Unit tests do not need them; integration tests skip (and fail under CI=true) without them.
MSG
exit 0
