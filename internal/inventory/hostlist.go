package inventory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/certpush/certpush/internal/yamlconf"
)

// listedHost is one entry of a host-list file, with what it set itself.
// It holds only what a line can give; the host's other settings are in
// base, shared by every plain entry of the list (a list may hold 100,000
// hosts, and a whole Host for each is 23 MB held for the whole run).
type listedHost struct {
	Name    string
	Address string
	User    string
	Port    int
	line    int
	setUser bool
	setPort bool
	// merged is set when the entry names a configured host: base is then
	// that host, with the entry's user and port, and the entry's own
	// fields are only what the line said.
	merged bool
	base   *Host
}

// host is the entry as a Host.
func (e *listedHost) host() Host {
	if e.merged {
		return *e.base
	}
	h := *e.base
	h.Name, h.Address, h.Port, h.User = e.Name, e.Address, e.Port, e.User
	return h
}

// name is the name of the host the entry stands for.
func (e *listedHost) name() string {
	if e.merged {
		return e.base.Name
	}
	return e.Name
}

// parseHostList parses a host-list file: one [user@]host[:port] a line;
// blank lines and '#' comments (whole-line or trailing) are ignored; IPv6
// is written [::1]:2222, or bare (::1) without a port. Each entry becomes
// a Host named as written without the user, with Address the host, and
// defaults (or the package defaults where those are unset) for what the
// line does not give. Every problem goes to ps, naming path and line;
// the entries returned are the good ones.
func parseHostList(path string, data []byte, defaults SSH, ps *yamlconf.Problems) []listedHost {
	lines := strings.Split(string(data), "\n")
	entries := make([]listedHost, 0, len(lines))
	seen := make(map[string]int, len(lines))
	base := &Host{
		Incoming: orDefault(defaults.Incoming, DefaultIncoming),
		Command:  orDefault(defaults.Command, DefaultCommand),
	}
	for i, line := range lines {
		n := i + 1
		e, err := parseHostLine(line, defaults)
		if err != nil {
			ps.Addf(path, n, "%v", err)
			continue
		}
		if e.Name == "" {
			continue
		}
		if first, ok := seen[e.Name]; ok {
			ps.Addf(path, n, "duplicate entry %q (first on line %d)", e.Name, first)
			continue
		}
		seen[e.Name] = n
		e.line = n
		e.base = base
		entries = append(entries, e)
	}
	return entries
}

// parseHostLine parses one line; it returns an entry with no name for a
// blank or comment line. The entry's base is left for the caller to set.
func parseHostLine(line string, defaults SSH) (listedHost, error) {
	var e listedHost
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimSpace(line)
	if line == "" {
		return e, nil
	}
	if i := strings.IndexAny(line, " \t\v\f\r"); i >= 0 {
		return e, fmt.Errorf("unexpected %q after %q: write one [user@]host[:port] a line", strings.TrimSpace(line[i:]), line[:i])
	}
	rest := line
	if user, r, ok := strings.Cut(line, "@"); ok {
		if err := checkUser(user); err != nil {
			return e, err
		}
		if strings.Contains(r, "@") {
			return e, fmt.Errorf("bad entry %q: more than one '@'", line)
		}
		e.User, e.setUser, rest = user, true, r
	}
	var host, port string
	hasPort := false
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return e, fmt.Errorf("bad entry %q: missing ']'", line)
		}
		host = rest[1:end]
		if a, err := yamlconf.ParseIP(host); err != nil || !a.Is6() {
			return e, fmt.Errorf("bad address %q: brackets must hold an IPv6 address", rest[:end+1])
		}
		if after := rest[end+1:]; after != "" {
			if after[0] != ':' {
				return e, fmt.Errorf("bad entry %q: unexpected %q after ']'", line, after)
			}
			port, hasPort = after[1:], true
		}
	case strings.Count(rest, ":") > 1:
		host = rest
		if a, err := yamlconf.ParseIP(host); err != nil || !a.Is6() {
			return e, fmt.Errorf("bad address %q: write IPv6 as [addr]:port or a bare address without port", rest)
		}
	default:
		host, port, hasPort = strings.Cut(rest, ":")
		addr, err := yamlconf.CheckAddress(host)
		if err != nil {
			return e, fmt.Errorf("bad address %q: %v", host, err)
		}
		host = addr
	}
	if hasPort {
		p, err := yamlconf.ParsePort(port)
		if err != nil {
			return e, err
		}
		e.Port, e.setPort = p, true
	}
	e.Name = rest
	e.Address = host
	if err := checkHostName(e.Name); err != nil {
		return e, fmt.Errorf("bad host name: %v", err)
	}
	if !e.setPort {
		e.Port = orDefault(defaults.Port, DefaultPort)
	}
	if !e.setUser {
		e.User = orDefault(defaults.User, DefaultUser)
	}
	return e, nil
}

// checkUser validates an SSH user name.
func checkUser(u string) error {
	if u == "" {
		return errors.New("empty user")
	}
	if len(u) > 255 {
		return fmt.Errorf("user is %d bytes, longer than 255", len(u))
	}
	for _, c := range u {
		if c <= ' ' || c > '~' || c == '@' || c == ':' || c == '#' || c == ',' {
			return fmt.Errorf("bad user %q: holds %q", u, c)
		}
	}
	return nil
}
