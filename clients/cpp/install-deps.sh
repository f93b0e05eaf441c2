#!/bin/sh
# Install the Debian (bookworm) packages the C++ client builds with: CMake, g++, pkg-config, gRPC C++ and
# protobuf (headers, libraries, protoc and grpc_cpp_plugin).
#
# Idempotent: when every package is already installed it does nothing (no apt-get update, no network), so
# `make setup` may call it every time. Needs root (or sudo) only when something is missing.
set -eu

# openssl: the command, for the test that makes a TLS certificate (usually present already).
PACKAGES="cmake g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc openssl"

missing=""
for pkg in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
        *"install ok installed"*) ;;
        *) missing="$missing $pkg" ;;
    esac
done

if [ -z "$missing" ]; then
    echo "clients/cpp: build dependencies present"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "clients/cpp: missing Debian packages:$missing - run this script as root" >&2
    exit 1
fi

echo "clients/cpp: installing$missing"
# An image with no package lists (docker images remove them) needs an update before any install.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    $SUDO apt-get update
fi
# shellcheck disable=SC2086  # word splitting of the package list is intended
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; then
    # Stale lists (a package version no longer on the mirror): refresh once and retry.
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi
