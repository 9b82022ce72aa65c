package cli

import "runtime/debug"

// Version is what a binary's version command prints: linked when the build
// set it (make links -X main.version=...), else the module version (a plain
// `go build` in a git checkout records a pseudo-version naming the commit,
// with "+dirty" for a modified work tree), else "dev-" and the VCS revision
// Go recorded in the binary, else "dev".
func Version(linked string) string {
	if linked != "" {
		return linked
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionOf(bi)
}

func versionOf(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "dev-" + rev
}
