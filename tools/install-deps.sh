#!/usr/bin/env bash
# Installs the Debian packages MetaStore's build, tests and benchmarks need, if missing.
# Idempotent and quiet when everything is present. Runs as root (CI and dev machines do).
set -euo pipefail

packages=(
  build-essential pkg-config clang libclang-dev protobuf-compiler librocksdb-dev # build
  etcd-server etcd-client                                                        # oracle + etcdctl
  golang-go golang-etcd-server-dev                                               # etcd's e2e suite
  curl openssl                                                                   # gateway differential, JWT key pairs
  redis-server                                                                   # layers benchmark
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (install Rust with rustup)" >&2
  exit 1
fi
