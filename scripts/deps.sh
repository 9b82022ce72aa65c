#!/usr/bin/env bash
# Installs the Debian packages that certpush's tests and demo start for
# real: OpenSSH sshd, nginx, pebble (ACME test server) and certbot; sudo
# for the least-privilege tests, ip and nft for the network-namespace
# tests (test/faults); promtool (Debian prometheus) for the alerting rules'
# tests (contrib/prometheus); headless chromium to render status --html's
# page; lintian and systemd-analyze (Debian systemd) for the package test
# (test/pkg).
# Does nothing when everything is already there.
set -euo pipefail

packages=(openssh-server openssh-client nginx-light pebble certbot sudo nftables iproute2 prometheus chromium lintian systemd)
need=()
command -v /usr/sbin/sshd >/dev/null || need+=(openssh-server)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v /usr/sbin/nginx >/dev/null || need+=(nginx-light)
command -v pebble >/dev/null || need+=(pebble)
command -v pebble-challtestsrv >/dev/null || need+=(pebble)
command -v certbot >/dev/null || need+=(certbot)
command -v sudo >/dev/null || need+=(sudo)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
command -v lintian >/dev/null || need+=(lintian)
command -v systemd-analyze >/dev/null || need+=(systemd)
# versitygw (S3-compatible server for the pull-mode tests): built once with
# go install into $(go env GOPATH)/bin (about 3 minutes cold), then cached.
# No root needed.
if command -v go >/dev/null && ! command -v versitygw >/dev/null && [ ! -x "$(go env GOPATH)/bin/versitygw" ]; then
  echo "deps: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0" >&2
  go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing ${need[*]}; install with: sudo apt-get install ${packages[*]}" >&2
  exit 1
fi
echo "deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# The packages may start system services; the tests start their own.
for s in nginx ssh prometheus; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
    systemctl stop "$s" || true
  fi
done
