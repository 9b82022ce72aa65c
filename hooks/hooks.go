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

// SudoersRule returns the rule of sudoers.certnode (its comments left
// out), for the default paths and the account certsync.
func SudoersRule() string {
	var rules []string
	for _, l := range strings.Split(sudoers, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			rules = append(rules, l)
		}
	}
	return strings.Join(rules, "\n")
}

// ForcedCommand is where the packages and the README put
// certnode-forced-command on a node.
const ForcedCommand = "/usr/local/lib/certpush/certnode-forced-command"
