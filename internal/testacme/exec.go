package testacme

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// execScript is a DNS hook for lego's exec provider (EXEC_PATH, default
// mode): `present FQDN VALUE` adds a TXT record through challtestsrv's
// management API, `cleanup FQDN VALUE` removes the name's TXT records. It
// needs only bash (its /dev/tcp), no HTTP client.
const execScript = `#!/bin/bash
# lego exec provider hook for pebble-challtestsrv at HOST:PORT.
# usage: present|cleanup FQDN VALUE
set -eu
host=@HOST@
port=@PORT@
case "${1:-}" in
present) path=/set-txt; body="{\"host\":\"$2\",\"value\":\"$3\"}" ;;
cleanup) path=/clear-txt; body="{\"host\":\"$2\"}" ;;
*) echo "usage: $0 present|cleanup FQDN VALUE" >&2; exit 2 ;;
esac
exec 3<>"/dev/tcp/$host/$port"
printf 'POST %s HTTP/1.0\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
	"$path" "$host" "$port" "${#body}" "$body" >&3
IFS= read -r status <&3 || status=
exec 3<&-
case "$status" in
"HTTP/1."?" 200"*) echo "challtestsrv: $1 $2" ;;
*) echo "challtestsrv: $path: ${status:-no answer}" >&2; exit 1 ;;
esac
`

// ExecScript writes dir/challtestsrv-hook, a bash script for lego's exec
// DNS provider (set EXEC_PATH to it) that sets and clears TXT records in
// this server's challtestsrv, and returns its path.
func (s *Server) ExecScript(dir string) (string, error) {
	u, err := url.Parse(s.ManagementURL)
	if err != nil {
		return "", err
	}
	script := strings.NewReplacer("@HOST@", u.Hostname(), "@PORT@", u.Port()).Replace(execScript)
	path := filepath.Join(dir, "challtestsrv-hook")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o700)
	if err != nil {
		return "", fmt.Errorf("write exec script: %w", err)
	}
	if _, err := f.WriteString(script); err != nil {
		f.Close()
		return "", fmt.Errorf("write exec script: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write exec script: %w", err)
	}
	return path, nil
}
