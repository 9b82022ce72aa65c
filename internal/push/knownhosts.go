package push

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Markers of a known_hosts line.
const (
	markerNone      = ""
	markerAuthority = "@cert-authority"
	markerRevoked   = "@revoked"
)

// knownLine is one usable known_hosts line.
type knownLine struct {
	marker   string // markerNone, markerAuthority or markerRevoked
	patterns string // the host field: a pattern list or one |1|salt|hash
	key      ssh.PublicKey
	line     int
}

// badLine is a known_hosts line that was skipped. Revokes is set when it
// may have been meant to revoke a key (an @revoked or unknown marker) for
// the hosts its pattern field names.
type badLine struct {
	line     int
	why      string
	patterns string
	revokes  bool
}

// parseKnownHosts reads a known_hosts file line by line, as OpenSSH does:
// comments and blank lines are ignored, and a malformed line is returned
// among the bad lines instead of failing the whole file.
func parseKnownHosts(r io.Reader) ([]knownLine, []badLine, error) {
	var (
		good []knownLine
		bad  []badLine
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		l, err := parseKnownLine(text)
		if err != nil {
			bad = append(bad, badLineOf(n, text, err))
			continue
		}
		l.line = n
		good = append(good, l)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return good, bad, nil
}

func parseKnownLine(text string) (knownLine, error) {
	fields := strings.Fields(text)
	var l knownLine
	if strings.HasPrefix(fields[0], "@") {
		switch fields[0] {
		case markerAuthority, markerRevoked:
			l.marker = fields[0]
		default:
			return l, fmt.Errorf("unknown marker %q", fields[0])
		}
		fields = fields[1:]
	}
	if len(fields) < 3 {
		return l, errors.New("too few fields (want [MARKER] HOSTS KEYTYPE BASE64-KEY [COMMENT])")
	}
	// A copy: a substring would keep the whole line's text alive, and
	// known_hosts may have a line for each of 100,000 hosts.
	l.patterns = strings.Clone(fields[0])
	if strings.HasPrefix(l.patterns, "|") {
		if _, _, err := decodeHashed(l.patterns); err != nil {
			return l, err
		}
	}
	der, err := base64.StdEncoding.DecodeString(fields[2])
	if err != nil {
		return l, fmt.Errorf("bad base64 key: %v", err)
	}
	if l.key, err = ssh.ParsePublicKey(der); err != nil {
		return l, fmt.Errorf("bad key: %v", err)
	}
	if l.key.Type() != fields[1] {
		return l, fmt.Errorf("key type %s does not match the key, a %s key", fields[1], l.key.Type())
	}
	return l, nil
}

func badLineOf(n int, text string, err error) badLine {
	b := badLine{line: n, why: err.Error()}
	fields := strings.Fields(text)
	if strings.HasPrefix(fields[0], "@") {
		b.revokes = fields[0] != markerAuthority
		fields = fields[1:]
	}
	if len(fields) > 0 {
		b.patterns = fields[0]
	}
	return b
}

// hostNames are the names a host's known_hosts lines may use: as
// knownhosts.Normalize writes its address ("name", or "[name]:port" for a
// port other than 22), and for another port the bare name too, which
// OpenSSH's ssh also accepts.
type hostNames []string

func lookupNames(address string) hostNames {
	names := hostNames{knownhosts.Normalize(address)}
	if name, port, err := net.SplitHostPort(address); err == nil && port != "22" {
		names = append(names, name)
	}
	return names
}

// match reports whether a host field matches any of the names.
func (n hostNames) match(patterns string) bool {
	return slices.ContainsFunc(n, func(name string) bool { return matchHost(name, patterns) })
}

// matchHost reports whether host (as knownhosts.Normalize writes it:
// "name", or "[name]:port" for a port other than 22) matches the host
// field of a known_hosts line, with OpenSSH's rules: a comma-separated
// list of patterns with * and ?, compared without case; a match of a
// negated pattern (!pattern) excludes the host whatever else matches; and
// a hashed field (|1|salt|hash) matches the one name it was made from.
func matchHost(host, patterns string) bool {
	host = strings.ToLower(host)
	if strings.HasPrefix(patterns, "|") {
		salt, sum, err := decodeHashed(patterns)
		if err != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(host))
		return hmac.Equal(mac.Sum(nil), sum)
	}
	matched := false
	for p := range strings.SplitSeq(patterns, ",") {
		p = strings.ToLower(p)
		negated := strings.HasPrefix(p, "!")
		if negated {
			p = p[1:]
		}
		if !matchPattern(host, p) {
			continue
		}
		if negated {
			return false
		}
		matched = true
	}
	return matched
}

// matchPattern matches s against a pattern where * stands for any run of
// characters and ? for any one character; every other character, [ and ]
// included, stands for itself.
func matchPattern(s, pattern string) bool {
	for pattern != "" {
		switch pattern[0] {
		case '*':
			pattern = strings.TrimLeft(pattern, "*")
			if pattern == "" {
				return true
			}
			for i := range len(s) + 1 {
				if matchPattern(s[i:], pattern) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
		}
		s, pattern = s[1:], pattern[1:]
	}
	return s == ""
}

// decodeHashed splits a hashed host field, |1|base64(salt)|base64(hash).
func decodeHashed(field string) (salt, sum []byte, err error) {
	parts := strings.Split(field, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return nil, nil, fmt.Errorf("bad hashed host %q (want |1|SALT|HASH)", field)
	}
	if salt, err = base64.StdEncoding.DecodeString(parts[2]); err != nil {
		return nil, nil, fmt.Errorf("bad hashed host salt: %v", err)
	}
	if sum, err = base64.StdEncoding.DecodeString(parts[3]); err != nil || len(sum) != sha1.Size {
		return nil, nil, fmt.Errorf("bad hashed host hash %q", parts[3])
	}
	return salt, sum, nil
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }
