#!/usr/bin/env bash
# Installs what umacvlan needs to build, test and fuzz on Debian 12, as root.
# Idempotent: installs only what is missing, so a second run is quick.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "run as root (the tests build network namespaces and the installer uses apt-get)"
  exit 1
fi

# Debian packages: clang + libelf for the eBPF program (libbpf-cargo), ping, iproute2
# ethtool and tcpdump for the network-namespace tests, pkg-config/zlib for libbpf-sys.
pkgs=()
command -v clang >/dev/null 2>&1 || pkgs+=(clang)
command -v ping >/dev/null 2>&1 || pkgs+=(iputils-ping)
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
command -v ethtool >/dev/null 2>&1 || pkgs+=(ethtool)
command -v tcpdump >/dev/null 2>&1 || pkgs+=(tcpdump)
# sysctl and kill (the tests set per-namespace sysctls and signal the daemon).
{ [ -x /usr/sbin/sysctl ] || [ -x /sbin/sysctl ]; } && [ -x /usr/bin/kill ] || pkgs+=(procps)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
command -v pkg-config >/dev/null 2>&1 || pkgs+=(pkg-config)
# Open vSwitch (userspace datapath, AF_XDP ports): a competitor in `umacvlan bench`.
# Only its tools are used, by a private instance the bench starts and stops; the
# package's own service is not needed.
command -v ovs-vswitchd >/dev/null 2>&1 || pkgs+=(openvswitch-switch)
# unshare (util-linux): the bench's threaded-NAPI option mounts a private sysfs.
command -v unshare >/dev/null 2>&1 || pkgs+=(util-linux)
for p in libelf-dev zlib1g-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  log "apt-get install ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# Docker 20.10 (Debian's docker.io) for the Docker driver's end-to-end test, and
# busybox-static for its image (images cannot be pulled: the test imports a rootfs).
# The test starts its own dockerd in a namespace of its own; the package's system
# service must not start, so a policy-rc.d refuses every start during the install.
# The CNI plugin's tests: the reference plugins (host-local, macvlan, ...) under
# /usr/lib/cni, Podman 4.3 (run by the test with a private configuration) and
# containerd's ctr (part of docker.io's dependencies).
if ! [ -x /usr/sbin/dockerd ] || ! [ -x /usr/bin/docker ] || ! [ -x /bin/busybox ] \
  || ! [ -x /usr/lib/cni/host-local ] || ! [ -x /usr/bin/podman ] || ! [ -x /usr/bin/ctr ]; then
  log "apt-get install docker.io busybox-static containernetworking-plugins podman (services kept from starting)"
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  restore_policy() { if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi; }
  trap restore_policy EXIT
  [ ${#pkgs[@]} -gt 0 ] || apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io busybox-static \
    containernetworking-plugins podman containerd >/dev/null
  restore_policy
  trap - EXIT
fi

# Rust components and tools.
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install the Rust toolchain (rustup) first"
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
log "ready"
