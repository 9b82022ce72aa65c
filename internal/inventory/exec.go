package inventory

import (
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/yamlconf"
)

// Target types: an SSH host (the default) or a command certpush runs
// with the verbs current and deploy (a load balancer, a CDN, a cloud
// certificate store).
const (
	TypeSSH  = "ssh"
	TypeExec = "exec"
)

// sshOnlyKeys are the host keys that mean nothing for an exec target.
var sshOnlyKeys = []string{"address", "port", "user", "incoming", "command", "install", "webroot"}

// IsExec reports whether h is an exec target.
func (h Host) IsExec() bool { return h.Type == TypeExec }

// Location names where the host's bundle goes, for reports: the SSH
// address, or "exec:" and the command of an exec target.
func (h Host) Location() string {
	if h.IsExec() {
		if len(h.Exec) == 0 {
			return "exec:"
		}
		return "exec:" + h.Exec[0]
	}
	return h.SSHAddress()
}

// execKey reads one of type, exec and timeout of a host entry.
func (p *parser) execKey(g yamlconf.Pair, key string, h *Host) {
	switch g.Key.Value {
	case "type":
		if v, ok := p.OneOf(g.Val, key, "target type", TypeSSH, TypeExec); ok && v == TypeExec {
			h.Type = TypeExec
		}
	case "exec":
		argv, ok := p.Strings(g.Val, key)
		if !ok {
			return
		}
		if len(argv) == 0 {
			p.Errorf(yamlconf.Deref(g.Val), "%s: must name a command (argv list, run without a shell)", key)
			return
		}
		// A relative program path with a slash is the config's
		// neighbour; a bare name is looked up in PATH.
		if strings.Contains(argv[0], "/") && !filepath.IsAbs(argv[0]) {
			argv[0] = p.Resolve(argv[0])
		}
		h.Exec = argv
	case "timeout":
		if v, ok := p.Duration(g.Val, key); ok {
			h.ExecTimeout = v
		}
	}
}

// execNeeds checks an exec target's entry: exec is required, and the
// keys of SSH hosts do not apply.
func (p *parser) execNeeds(keyNode *yaml.Node, where string, h *Host, set map[string]*yaml.Node) {
	if set["exec"] == nil {
		p.Errorf(keyNode, "%s: exec is required for type: exec (the command, as an argv list)", where)
	}
	for _, k := range sshOnlyKeys {
		if kn := set[k]; kn != nil {
			p.Errorf(kn, "%s.%s: only applies to SSH hosts, not type: exec", where, k)
		}
	}
}

// checkExecKeys reports exec and timeout on a host that is not an exec
// target.
func (p *parser) checkExecKeys(where string, h *Host, set map[string]*yaml.Node) {
	if h.IsExec() {
		return
	}
	for _, k := range []string{"exec", "timeout"} {
		if kn := set[k]; kn != nil {
			p.Errorf(kn, "%s.%s: only applies to type: exec targets", where, k)
		}
	}
}
