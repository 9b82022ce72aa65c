#!/usr/bin/env bash
# Installs the Debian packages that certpush's tests and demo start for
# real: OpenSSH sshd, nginx, pebble (ACME test server) and certbot; sudo
# for the least-privilege tests, ip and nft for the network-namespace
# tests (test/faults); promtool (Debian prometheus) for the alerting rules'
# tests (contrib/prometheus); headless chromium to render status --html's
# page; lintian and systemd-analyze (Debian systemd) for the package test
# (test/pkg); haproxy (runtime-API hot swap), socat (the haproxy-runtime
# exec target), jq and openssl (the cloud exec targets and the test exec
# targets) and shellcheck (hooks/targets) for the load-balancer tests;
# ansible-core and puppet for the node roles' tests (test/ansible,
# test/puppet), cron for Ansible's cron module, python3-apt for its apt
# module (the roles' package method).
# pebble v2.10.3 and its pebble-challtestsrv (profiles, ARI,
# dns-persist-01, which Debian's pebble 2.4 lacks) are built with go
# install into $(go env GOPATH)/bin, where internal/testacme looks first.
# Does nothing when everything is already there.
set -euo pipefail

pebble_version=v2.10.3
if command -v go >/dev/null; then
  gobin="$(go env GOBIN)"
  [ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
  for p in pebble pebble-challtestsrv; do
    if [ ! -x "$gobin/$p" ]; then
      echo "deps: go install github.com/letsencrypt/pebble/v2/cmd/$p@$pebble_version" >&2
      GOBIN="$gobin" go install "github.com/letsencrypt/pebble/v2/cmd/$p@$pebble_version"
    fi
  done
else
  echo "deps: go not found: cannot build pebble $pebble_version (the ACME tests need it)" >&2
  exit 1
fi

packages=(openssh-server openssh-client nginx-light pebble certbot sudo nftables iproute2 prometheus chromium lintian systemd haproxy socat jq openssl shellcheck ansible-core puppet cron python3-apt)
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
command -v /usr/sbin/haproxy >/dev/null || need+=(haproxy)
command -v socat >/dev/null || need+=(socat)
command -v jq >/dev/null || need+=(jq)
command -v openssl >/dev/null || need+=(openssl)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v ansible-playbook >/dev/null || need+=(ansible-core)
command -v puppet >/dev/null || need+=(puppet)
command -v crontab >/dev/null || need+=(cron)
/usr/bin/python3 -c 'import apt' 2>/dev/null || need+=(python3-apt)
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
for s in nginx ssh prometheus haproxy cron puppet; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$s" 2>/dev/null; then
    systemctl stop "$s" || true
  fi
done
