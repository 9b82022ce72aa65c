package yamlconf

import (
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
)

// The typed readers below each return the value and whether it was good;
// a bad value is reported, at its line, under key (the dotted path of the
// value in the file, such as ssh.port).

// Int reads an integer as YAML writes it (12, 0x1f, 0o17).
func (c *Checker) Int(n *yaml.Node, key string) (int, bool) {
	s, ok := c.Scalar(n, key)
	if !ok {
		return 0, false
	}
	var v int
	if s.ShortTag() != "!!int" || s.Decode(&v) != nil {
		c.Errorf(s, "%s: want an integer, got %s", key, Describe(s))
		return 0, false
	}
	return v, true
}

// Port reads a TCP port number, 1..65535.
func (c *Checker) Port(n *yaml.Node, key string) (int, bool) {
	v, ok := c.Int(n, key)
	if ok && (v < 1 || v > 65535) {
		c.Errorf(Deref(n), "%s: %d out of range 1..65535", key, v)
		return 0, false
	}
	return v, ok
}

// Bool reads true or false.
func (c *Checker) Bool(n *yaml.Node, key string) (bool, bool) {
	s, ok := c.Scalar(n, key)
	if !ok {
		return false, false
	}
	var v bool
	if s.ShortTag() != "!!bool" || s.Decode(&v) != nil {
		c.Errorf(s, "%s: want true or false, got %s", key, Describe(s))
		return false, false
	}
	return v, true
}

// Duration reads a positive Go duration (90s, 15m, 720h).
func (c *Checker) Duration(n *yaml.Node, key string) (time.Duration, bool) {
	return c.duration(n, key, "a positive duration", func(d time.Duration) bool { return d > 0 })
}

// DurationOrZero reads a Go duration that may be 0, but not negative.
func (c *Checker) DurationOrZero(n *yaml.Node, key string) (time.Duration, bool) {
	return c.duration(n, key, "0 or a positive duration", func(d time.Duration) bool { return d >= 0 })
}

func (c *Checker) duration(n *yaml.Node, key, want string, good func(time.Duration) bool) (time.Duration, bool) {
	s, ok := c.Scalar(n, key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s.Value)
	if err != nil || IsNull(s) || !good(d) {
		c.Errorf(s, "%s: want %s such as 90s, 15m or 720h, got %s", key, want, Describe(s))
		return 0, false
	}
	return d, true
}

// Path reads a non-empty file name, resolved (see Resolve).
func (c *Checker) Path(n *yaml.Node, key string) (string, bool) {
	s, ok := c.NonEmpty(n, key)
	if !ok {
		return "", false
	}
	return c.Resolve(s), true
}

// Resolve makes a file name written in File absolute when File is, by
// resolving it against File's directory, and cleans it.
func (c *Checker) Resolve(s string) string {
	if !filepath.IsAbs(s) {
		s = filepath.Join(filepath.Dir(c.File), s)
	}
	return filepath.Clean(s)
}

// Items reads a list of single values, none of them empty, and returns
// the good ones (aliases followed); null is an empty list. An item's
// problems are reported under key[i].
func (c *Checker) Items(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	items, ok := c.Seq(n, key)
	if !ok {
		return nil, false
	}
	var out []*yaml.Node
	for i, e := range items {
		item := fmt.Sprintf("%s[%d]", key, i)
		s, good := c.Text(e, item)
		if good && s == "" {
			c.Errorf(Deref(e), "%s: must not be empty", item)
			good = false
		}
		if !good {
			ok = false
			continue
		}
		out = append(out, Deref(e))
	}
	return out, ok
}

// Strings is Items, as text.
func (c *Checker) Strings(n *yaml.Node, key string) ([]string, bool) {
	items, ok := c.Items(n, key)
	return values(items), ok
}

func values(nodes []*yaml.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Value
	}
	return out
}

// Endpoints reads a list of host:port (see CheckEndpoint).
func (c *Checker) Endpoints(n *yaml.Node, key string) ([]string, bool) {
	items, ok := c.Items(n, key)
	var out []string
	for _, it := range items {
		if err := CheckEndpoint(it.Value, false); err != nil {
			c.Errorf(it, "%s: %v", key, err)
			ok = false
			continue
		}
		out = append(out, it.Value)
	}
	return out, ok
}

// Domains reads a list of certificate domains (see CheckDomain), in lower
// case and without duplicates; it is false when anything was wrong.
func (c *Checker) Domains(n *yaml.Node, key string) ([]string, bool) {
	items, ok := c.Items(n, key)
	var out []string
	for _, it := range items {
		d, err := CheckDomain(it.Value)
		if err != nil {
			c.Errorf(it, "%s: %v", key, err)
			ok = false
			continue
		}
		if slices.Contains(out, d) {
			c.Errorf(it, "%s: duplicate domain %q", key, d)
			ok = false
			continue
		}
		out = append(out, d)
	}
	return out, ok
}

// ServerName reads a TLS server name (a host name, not loose, see
// CheckDNSName) in lower case; empty or null is "".
func (c *Checker) ServerName(n *yaml.Node, key string) (string, bool) {
	v, ok := c.Text(n, key)
	if !ok || v == "" {
		return v, ok
	}
	if err := CheckDNSName(v, false); err != nil {
		c.Errorf(Deref(n), "%s: bad server name %q: %v", key, v, err)
		return "", false
	}
	return strings.ToLower(v), true
}

// Roots reads the PEM file of root certificates that n names (resolved
// like Path); a file that cannot be read or holds anything but
// certificates is an error at n.
func (c *Checker) Roots(n *yaml.Node, key string) (*x509.CertPool, bool) {
	path, ok := c.Path(n, key)
	if !ok {
		return nil, false
	}
	pool, err := bundle.LoadRoots(path)
	if err != nil {
		c.Errorf(Deref(n), "%s: %v (a PEM file of the root certificates to trust)", key, err)
		return nil, false
	}
	return pool, true
}
