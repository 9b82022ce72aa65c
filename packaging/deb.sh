#!/bin/sh
# Builds certpush_<version>_<arch>.deb and certnode_<version>_<arch>.deb
# for each architecture with nfpm (the Go tool pinned in tools/go.mod).
# Run by `make deb`; settings from the environment:
#   VERSION     package and binary version (default: packaging/version.sh)
#   ARCHES      GOARCH values (default: amd64 arm64)
#   DIST        where the .debs go (default: dist)
#   MAINTAINER  the packages' Maintainer field
#   GO          the go command (default: go)
set -eu
cd "$(dirname "$0")/.."
GO=${GO:-go}
VERSION=${VERSION:-$(packaging/version.sh)}
ARCHES=${ARCHES:-amd64 arm64}
DIST=${DIST:-dist}
MAINTAINER=${MAINTAINER:-certpush developers <certpush@example.org>}
STAGE=${STAGE:-build/deb}
case $VERSION in
[0-9]*) ;;
*) echo "deb.sh: version $VERSION does not start with a digit" >&2; exit 2 ;;
esac
case $VERSION in
*[!A-Za-z0-9.+~]*) echo "deb.sh: version $VERSION has characters a Debian version may not" >&2; exit 2 ;;
esac
export VERSION MAINTAINER STAGE

rm -rf "$STAGE"
mkdir -p "$STAGE/share" "$DIST"
# The node files, with the paths of the package.
paths() {
	sed -e 's|/usr/local/bin/certnode|/usr/bin/certnode|g' \
		-e 's|/usr/local/bin/certpush|/usr/bin/certpush|g' \
		-e 's|/usr/local/lib/certpush/certnode-forced-command|/usr/share/certnode/certnode-forced-command|g' "$@"
}
paths hooks/certnode-forced-command >"$STAGE/share/certnode-forced-command"
paths hooks/sudoers.certnode >"$STAGE/share/sudoers.certnode"
paths hooks/sshd_config.certpush >"$STAGE/share/sshd_config.certpush"
paths hooks/certbot-deploy-certpush >"$STAGE/share/certbot-deploy-hook"

# A Debian changelog of one entry: this build.
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
for p in certpush certnode; do
	printf '%s (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
		"$p" "$VERSION" "$commit" "$MAINTAINER" "$date" | gzip -n -9 >"$STAGE/share/$p.changelog.gz"
done


# certpush init prints the packaged node paths.
hookpaths="-X github.com/certpush/certpush/hooks.binDir=/usr/bin -X github.com/certpush/certpush/hooks.forcedCommand=/usr/share/certnode/certnode-forced-command"
for arch in $ARCHES; do
	mkdir -p "$STAGE/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath \
		-ldflags "-s -w -X main.version=$VERSION $hookpaths" -o "$STAGE/$arch/" ./cmd/certpush ./cmd/certnode
	for p in certpush certnode; do
		ARCH=$arch "$GO" tool -modfile=tools/go.mod nfpm package --config "packaging/$p.yaml" --packager deb \
			--target "$DIST/${p}_${VERSION}_$arch.deb" >/dev/null
		echo "$DIST/${p}_${VERSION}_$arch.deb"
	done
done
