package install

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
)

// Defaults of the node configuration.
const (
	DefaultConfigPath    = "/etc/certnode/certnode.yaml"
	DefaultRoot          = "/etc/certnode"
	DefaultIncoming      = "/certsync/live"
	DefaultKeep          = 3
	DefaultTimeout       = 60 * time.Second
	DefaultVerifyTimeout = 10 * time.Second
	DefaultKeyMode       = os.FileMode(0o600)
	DefaultCertMode      = os.FileMode(0o644)
)

// MaxConfigSize bounds the configuration file.
const MaxConfigSize = 1 << 20

// Config is a parsed and validated node configuration.
type Config struct {
	Path        string // the file it was read from
	Root        string // holds archive/ and live/
	Incoming    string // where pushes land
	TrustedKeys []ed25519.PublicKey
	Keep        int           // versions kept per certificate, current included
	Lock        string        // lock file
	Timeout     time.Duration // per test or reload command
	Defaults    Settings
	Certs       map[string]*Cert // the only names that are installed
}

// Settings are the per-certificate keys that the defaults section sets
// for every certificate and each certificate may override.
type Settings struct {
	Owner         string      // user name or uid; "" keeps the running user
	Group         string      // group name or gid; "" keeps the running group
	KeyMode       os.FileMode // privkey.pem
	CertMode      os.FileMode // every other file
	Test          []string    // argv of the config test; nil for none
	Reload        []string    // argv of the reload; nil for none
	Verify        []string    // host:port endpoints checked after a reload
	VerifySNI     string      // "" for verify.DefaultSNI of the domains
	VerifyTimeout time.Duration
}

// Cert is one configured certificate.
type Cert struct {
	Name    string
	Domains []string // names the certificate must cover; nil for the manifest's
	Settings
}

// Names returns the configured certificate names, sorted.
func (c *Config) Names() []string {
	names := make([]string, 0, len(c.Certs))
	for n := range c.Certs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ConfigError is a problem in the configuration file at a line (0 when
// the problem is about the file as a whole).
type ConfigError struct {
	File string
	Line int
	Msg  string
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxConfigSize)}
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates a configuration held in data, as if
// read from path (relative paths in it are resolved against path's
// directory). Unknown keys and bad values are errors; every problem is a
// *ConfigError naming the file and line, all joined with errors.Join.
func ParseConfig(path string, data []byte) (*Config, error) {
	p := &parser{file: path, dir: filepath.Dir(path)}
	cfg := p.parse(data)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i], p.errs[j]
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line == 0
			}
			return a.Line < b.Line
		})
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

type parser struct {
	file string
	dir  string
	errs []*ConfigError
}

type pair struct{ key, val *yaml.Node }

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Msg: m[2]})
		return
	}
	p.errs = append(p.errs, &ConfigError{File: p.file, Msg: strings.TrimPrefix(msg, "yaml: ")})
}

var topKeys = []string{"root", "incoming", "trusted_keys", "keep", "lock", "timeout", "defaults", "certs"}

var settingKeys = []string{"owner", "group", "key_mode", "cert_mode", "test", "reload", "verify", "verify_sni", "verify_timeout"}

func (p *parser) parse(data []byte) *Config {
	cfg := &Config{
		Path:     p.file,
		Root:     DefaultRoot,
		Incoming: DefaultIncoming,
		Keep:     DefaultKeep,
		Timeout:  DefaultTimeout,
		Defaults: Settings{
			KeyMode:       DefaultKeyMode,
			CertMode:      DefaultCertMode,
			VerifyTimeout: DefaultVerifyTimeout,
		},
		Certs: map[string]*Cert{},
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		p.yamlError(err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errf(&extra, "more than one YAML document; put everything in one")
		return nil
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
		return nil
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	var certsKey, certsVal, defaultsVal, rootKey, incomingKey *yaml.Node
	for _, f := range p.pairs(root, "") {
		switch f.key.Value {
		case "root":
			rootKey = f.key
			if s, ok := p.path(f.val, "root"); ok {
				cfg.Root = s
			}
		case "incoming":
			incomingKey = f.key
			if s, ok := p.path(f.val, "incoming"); ok {
				cfg.Incoming = s
			}
		case "trusted_keys":
			cfg.TrustedKeys = p.trustedKeys(f.val)
		case "keep":
			if n, ok := p.integer(f.val, "keep"); ok {
				if n < 2 {
					p.errf(deref(f.val), "keep: %d, want 2 or more (the current version and one to roll back to)", n)
				} else {
					cfg.Keep = n
				}
			}
		case "lock":
			if s, ok := p.str(f.val, "lock"); ok && s != "" {
				if !filepath.IsAbs(s) {
					s = filepath.Join(p.dir, s)
				}
				cfg.Lock = filepath.Clean(s)
			}
		case "timeout":
			if d, ok := p.duration(f.val, "timeout"); ok {
				cfg.Timeout = d
			}
		case "defaults":
			defaultsVal = f.val
		case "certs":
			certsKey, certsVal = f.key, f.val
		default:
			p.unknown(f.key, "", topKeys)
		}
	}
	if cfg.Lock == "" {
		cfg.Lock = filepath.Join(cfg.Root, ".lock")
	}
	if within(cfg.Root, cfg.Incoming) || within(cfg.Incoming, cfg.Root) {
		n := incomingKey
		if n == nil {
			n = rootKey
		}
		p.errf(n, "root %s and incoming %s must not be inside one another: the push account owns incoming", cfg.Root, cfg.Incoming)
	}
	p.settings(defaultsVal, "defaults", &cfg.Defaults)

	certs := p.pairs(certsVal, "certs")
	if len(certs) == 0 {
		n := certsKey
		if n == nil {
			n = root
		}
		p.errf(n, "certs: no certificates configured; list each certificate this node installs")
	}
	for _, f := range certs {
		name := f.key.Value
		if err := bundle.ValidName(name); err != nil {
			p.errf(f.key, "certs: %v", err)
			continue
		}
		c := &Cert{Name: name, Settings: cfg.Defaults}
		c.Settings.Test = cloneArgs(cfg.Defaults.Test)
		c.Settings.Reload = cloneArgs(cfg.Defaults.Reload)
		c.Settings.Verify = cloneArgs(cfg.Defaults.Verify)
		where := "certs." + name
		var rest []pair
		for _, g := range p.pairs(f.val, where) {
			if g.key.Value == "domains" {
				c.Domains = p.domains(g.val, where+".domains")
				continue
			}
			rest = append(rest, g)
		}
		p.settingPairs(rest, where, &c.Settings, append([]string{"domains"}, settingKeys...))
		cfg.Certs[name] = c
	}
	return cfg
}

func cloneArgs(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string{}, s...)
}

// within reports whether path is dir or inside it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != "..")
}

func (p *parser) settings(n *yaml.Node, where string, s *Settings) {
	p.settingPairs(p.pairs(n, where), where, s, settingKeys)
}

func (p *parser) settingPairs(fields []pair, where string, s *Settings, known []string) {
	for _, f := range fields {
		key := where + "." + f.key.Value
		switch f.key.Value {
		case "owner":
			if v, ok := p.account(f.val, key); ok {
				s.Owner = v
			}
		case "group":
			if v, ok := p.account(f.val, key); ok {
				s.Group = v
			}
		case "key_mode":
			if m, ok := p.mode(f.val, key); ok {
				if m&0o007 != 0 {
					p.errf(deref(f.val), "%s: %04o lets every user on the host read or change the private key; use 0600 or 0640", key, m)
				} else {
					s.KeyMode = m
				}
			}
		case "cert_mode":
			if m, ok := p.mode(f.val, key); ok {
				s.CertMode = m
			}
		case "test":
			if a, ok := p.argv(f.val, key); ok {
				s.Test = a
			}
		case "reload":
			if a, ok := p.argv(f.val, key); ok {
				s.Reload = a
			}
		case "verify":
			if a, ok := p.endpoints(f.val, key); ok {
				s.Verify = a
			}
		case "verify_sni":
			if v, ok := p.str(f.val, key); ok {
				if v != "" && !validHostname(v) {
					p.errf(deref(f.val), "%s: %q is not a host name", key, v)
				} else {
					s.VerifySNI = v
				}
			}
		case "verify_timeout":
			if d, ok := p.duration(f.val, key); ok {
				s.VerifyTimeout = d
			}
		default:
			p.unknown(f.key, where, known)
		}
	}
}

func (p *parser) unknown(key *yaml.Node, where string, known []string) {
	msg := fmt.Sprintf("unknown key %q", key.Value)
	if where != "" {
		msg += " in " + where
	}
	if s := closest(key.Value, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	p.errf(key, "%s", msg)
}

// closest returns the word of known nearest to w, if it is near enough to
// be a likely typo.
func closest(w string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := distance(w, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// distance is the Levenshtein distance, with a cap on input size.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

func label(where string) string {
	if where == "" {
		return "top level"
	}
	return where
}

// pairs returns the keys and values of a mapping; a null value is an empty
// mapping. Merge keys (<<) are refused: the file is short enough to write
// out, and defaults already covers sharing.
func (p *parser) pairs(n *yaml.Node, where string) []pair {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: want a mapping, got %s", label(where), describe(n))
		return nil
	}
	seen := map[string]bool{}
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			p.errf(n.Content[i], "%s: a key must be a plain string, got %s", label(where), describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.errf(k, "%s: merge keys (<<) are not supported; use defaults", label(where))
			continue
		}
		if seen[k.Value] {
			p.errf(k, "duplicate key %q in %s", k.Value, label(where))
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{k, v})
	}
	return out
}

func (p *parser) scalar(n *yaml.Node, key string) (*yaml.Node, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		p.errf(n, "%s: want a single value, got %s", key, describe(n))
		return nil, false
	}
	return n, true
}

func (p *parser) str(n *yaml.Node, key string) (string, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return "", false
	}
	if isNull(s) {
		return "", true
	}
	if strings.ContainsFunc(s.Value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
		p.errf(s, "%s: control characters are not allowed", key)
		return "", false
	}
	return s.Value, true
}

func (p *parser) path(n *yaml.Node, key string) (string, bool) {
	s, ok := p.str(n, key)
	if !ok {
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		p.errf(deref(n), "%s: must not be empty", key)
		return "", false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	return filepath.Clean(s), true
}

func (p *parser) integer(n *yaml.Node, key string) (int, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s.Value)
	if err != nil || s.ShortTag() != "!!int" {
		p.errf(s, "%s: want a whole number, got %s", key, describe(s))
		return 0, false
	}
	return v, true
}

func (p *parser) duration(n *yaml.Node, key string) (time.Duration, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s.Value)
	if err != nil || d <= 0 {
		p.errf(s, "%s: want a positive duration such as 30s or 2m, got %s", key, describe(s))
		return 0, false
	}
	return d, true
}

// mode parses a file mode written in octal ("0640", 0640 or "0o640").
func (p *parser) mode(n *yaml.Node, key string) (os.FileMode, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0, false
	}
	v := strings.TrimPrefix(strings.TrimPrefix(s.Value, "0o"), "0O")
	m, err := strconv.ParseUint(v, 8, 32)
	if err != nil || v == "" || m > 0o777 {
		p.errf(s, "%s: want an octal file mode such as \"0640\", got %s", key, describe(s))
		return 0, false
	}
	if m&0o400 == 0 {
		p.errf(s, "%s: %04o does not let the owner read the file", key, m)
		return 0, false
	}
	return os.FileMode(m), true
}

var accountRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

// account is a user or group name or a numeric id.
func (p *parser) account(n *yaml.Node, key string) (string, bool) {
	s, ok := p.str(n, key)
	if !ok || s == "" {
		return s, ok
	}
	if !accountRE.MatchString(s) {
		p.errf(deref(n), "%s: %q is not a user or group name or a numeric id", key, s)
		return "", false
	}
	return s, true
}

// list returns the items of a sequence; null is an empty list.
func (p *parser) list(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	n = deref(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s: want a list, got %s", key, describe(n))
		return nil, false
	}
	return n.Content, true
}

func (p *parser) strings(n *yaml.Node, key string) ([]string, bool) {
	items, ok := p.list(n, key)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	good := true
	for _, it := range items {
		s, ok := p.str(it, key)
		if !ok {
			good = false
			continue
		}
		if s == "" {
			p.errf(deref(it), "%s: empty item", key)
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

// argv is a command as a list of arguments, run without a shell. An empty
// list means no command.
func (p *parser) argv(n *yaml.Node, key string) ([]string, bool) {
	if s := deref(n); s != nil && s.Kind == yaml.ScalarNode && !isNull(s) {
		p.errf(s, "%s: want the command as a list of arguments, such as [systemctl, reload, nginx] (no shell is used), got %s", key, describe(s))
		return nil, false
	}
	a, ok := p.strings(n, key)
	if !ok {
		return nil, false
	}
	if len(a) == 0 {
		return nil, true
	}
	return a, true
}

func (p *parser) endpoints(n *yaml.Node, key string) ([]string, bool) {
	items, ok := p.list(n, key)
	if !ok {
		return nil, false
	}
	var out []string
	good := true
	for _, it := range items {
		s, ok := p.str(it, key)
		if !ok {
			good = false
			continue
		}
		host, port, err := net.SplitHostPort(s)
		if err == nil {
			var n uint64
			n, err = strconv.ParseUint(port, 10, 16)
			if err == nil && (n == 0 || host == "") {
				err = errors.New("bad port or host")
			}
		}
		if err != nil {
			p.errf(deref(it), "%s: %q is not host:port (IPv6: [::1]:443)", key, s)
			good = false
			continue
		}
		out = append(out, s)
	}
	return out, good
}

func (p *parser) domains(n *yaml.Node, key string) []string {
	d, ok := p.strings(n, key)
	if !ok {
		return nil
	}
	for i, s := range d {
		if !validHostname(strings.TrimPrefix(s, "*.")) {
			p.errf(deref(n), "%s: %q is not a domain name", key, s)
			return nil
		}
		d[i] = strings.ToLower(s)
	}
	if len(d) == 0 {
		return nil
	}
	return d
}

func (p *parser) trustedKeys(n *yaml.Node) []ed25519.PublicKey {
	items, ok := p.list(n, "trusted_keys")
	if !ok {
		return nil
	}
	var out []ed25519.PublicKey
	for _, it := range items {
		s, ok := p.str(it, "trusted_keys")
		if !ok {
			continue
		}
		k, err := bundle.ParsePublicKey(s)
		if err != nil {
			p.errf(deref(it), "trusted_keys: %v (copy it from signing.pub in certpush's state directory)", err)
			continue
		}
		out = append(out, k)
	}
	return out
}

func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
