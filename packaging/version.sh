#!/bin/sh
# Prints the version of this checkout in a form dpkg accepts and orders:
#   tag v1.2.3 (or 1.2.3)              -> 1.2.3 (v1.3.0-rc1 -> 1.3.0~rc1)
#   3 commits after it, commit abc1234 -> 1.2.3+git20261203074510.3.abc1234
#   no tag                             -> 0.0.0~git20261203074510.abc1234
# with ".dirty" appended for a modified work tree, from `git describe --tags
# --always --dirty`; the commit time (UTC) orders builds of untagged
# commits. Outside git: 0.0.0~unknown.
set -eu
cd "$(dirname "$0")/.."
desc=$(git describe --tags --always --dirty 2>/dev/null) || { echo 0.0.0~unknown; exit 0; }
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null || echo 0)
dirty=
case $desc in
*-dirty) dirty=.dirty; desc=${desc%-dirty} ;;
esac
# Characters a Debian upstream version may hold: the rest become '.'.
safe() { printf '%s' "$1" | tr '-' '~' | tr -c 'A-Za-z0-9.+~' '.'; }
case $desc in
*-*-g*)
	# TAG-N-gHASH (the tag itself may contain '-')
	hash=${desc##*-g}
	rest=${desc%-g*}
	n=${rest##*-}
	tag=${rest%-*}
	tag=${tag#v}
	v="$(safe "$tag")+git$date.$n.$hash"
	;;
*)
	if git describe --tags --exact-match >/dev/null 2>&1; then
		v=$(safe "${desc#v}")
	else
		v="0.0.0~git$date.$desc"
	fi
	;;
esac
case $v in
[0-9]*) ;;
*) v="0.0.0~$v" ;;
esac
echo "$v$dirty"
