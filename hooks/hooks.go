// Package hooks holds the files shipped for nodes (the forced command,
// the sudoers line, the sshd snippet) and the certbot deploy hook, and
// embeds those that certpush prints for an operator.
package hooks

import (
	_ "embed"
	"strings"
)

//go:embed sudoers.certnode
var sudoers string

// Where the node's files are, as the build installs them. A plain go
// build and make install with the default PREFIX use /usr/local; make
// install PREFIX=P and the Debian packages set both at link time
// (-X github.com/certpush/certpush/hooks.binDir=..., see the Makefile and
// packaging/deb.sh), so that certpush init prints the paths of the files
// that were installed with it.
var (
	binDir        = "/usr/local/bin"
	forcedCommand = "/usr/local/lib/certpush/certnode-forced-command"
)

// SudoersRule returns the rule of sudoers.certnode (its comments left
// out), for this build's paths and the account certsync.
func SudoersRule() string {
	var rules []string
	for _, l := range strings.Split(sudoers, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, strings.ReplaceAll(l, "/usr/local/bin/certnode", CertnodeBinary()))
		}
	}
	return strings.Join(rules, "\n")
}

// ForcedCommand is where this build's installation (make install, or the
// certnode package) puts certnode-forced-command on a node.
func ForcedCommand() string { return forcedCommand }

// CertnodeBinary is where this build's installation puts certnode.
func CertnodeBinary() string { return strings.TrimSuffix(binDir, "/") + "/certnode" }
