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
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/yamlconf"
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
	// Merge keys are refused: the file is short enough to write out, and
	// defaults already covers sharing.
	p.Checker = yamlconf.Checker{Report: p.report, NoMerge: true, MergeHint: "use defaults"}
	cfg := p.parse(data)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *ConfigError) int { return yamlconf.CompareLines(a.Line, b.Line) })
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

type parser struct {
	yamlconf.Checker
	file string
	dir  string
	errs []*ConfigError
}

func (p *parser) report(line int, msg string) {
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Msg: msg})
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
	root, ok := p.Document(data)
	if !ok {
		return nil
	}
	var certsKey, certsVal, defaultsVal, rootKey, incomingKey *yaml.Node
	for _, f := range p.Pairs(root, "") {
		switch f.Key.Value {
		case "root":
			rootKey = f.Key
			if s, ok := p.path(f.Val, "root"); ok {
				cfg.Root = s
			}
		case "incoming":
			incomingKey = f.Key
			if s, ok := p.path(f.Val, "incoming"); ok {
				cfg.Incoming = s
			}
		case "trusted_keys":
			cfg.TrustedKeys = p.trustedKeys(f.Val)
		case "keep":
			if n, ok := p.integer(f.Val, "keep"); ok {
				if n < 2 {
					p.Errorf(yamlconf.Deref(f.Val), "keep: %d, want 2 or more (the current version and one to roll back to)", n)
				} else {
					cfg.Keep = n
				}
			}
		case "lock":
			if s, ok := p.Text(f.Val, "lock"); ok && s != "" {
				if !filepath.IsAbs(s) {
					s = filepath.Join(p.dir, s)
				}
				cfg.Lock = filepath.Clean(s)
			}
		case "timeout":
			if d, ok := p.duration(f.Val, "timeout"); ok {
				cfg.Timeout = d
			}
		case "defaults":
			defaultsVal = f.Val
		case "certs":
			certsKey, certsVal = f.Key, f.Val
		default:
			p.Unknown(f.Key, "", topKeys)
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
		p.Errorf(n, "root %s and incoming %s must not be inside one another: the push account owns incoming", cfg.Root, cfg.Incoming)
	}
	p.settings(defaultsVal, "defaults", &cfg.Defaults)

	certs := p.Pairs(certsVal, "certs")
	if len(certs) == 0 {
		n := certsKey
		if n == nil {
			n = root
		}
		p.Errorf(n, "certs: no certificates configured; list each certificate this node installs")
	}
	for _, f := range certs {
		name := f.Key.Value
		if err := bundle.ValidName(name); err != nil {
			p.Errorf(f.Key, "certs: %v", err)
			continue
		}
		c := &Cert{Name: name, Settings: cfg.Defaults}
		c.Settings.Test = cloneArgs(cfg.Defaults.Test)
		c.Settings.Reload = cloneArgs(cfg.Defaults.Reload)
		c.Settings.Verify = cloneArgs(cfg.Defaults.Verify)
		where := "certs." + name
		var rest []yamlconf.Pair
		for _, g := range p.Pairs(f.Val, where) {
			if g.Key.Value == "domains" {
				c.Domains = p.domains(g.Val, where+".domains")
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
	p.settingPairs(p.Pairs(n, where), where, s, settingKeys)
}

func (p *parser) settingPairs(fields []yamlconf.Pair, where string, s *Settings, known []string) {
	for _, f := range fields {
		key := where + "." + f.Key.Value
		switch f.Key.Value {
		case "owner":
			if v, ok := p.account(f.Val, key); ok {
				s.Owner = v
			}
		case "group":
			if v, ok := p.account(f.Val, key); ok {
				s.Group = v
			}
		case "key_mode":
			if m, ok := p.mode(f.Val, key); ok {
				if m&0o007 != 0 {
					p.Errorf(yamlconf.Deref(f.Val), "%s: %04o lets every user on the host read or change the private key; use 0600 or 0640", key, m)
				} else {
					s.KeyMode = m
				}
			}
		case "cert_mode":
			if m, ok := p.mode(f.Val, key); ok {
				s.CertMode = m
			}
		case "test":
			if a, ok := p.argv(f.Val, key); ok {
				s.Test = a
			}
		case "reload":
			if a, ok := p.argv(f.Val, key); ok {
				s.Reload = a
			}
		case "verify":
			if a, ok := p.endpoints(f.Val, key); ok {
				s.Verify = a
			}
		case "verify_sni":
			if v, ok := p.Text(f.Val, key); ok {
				if v != "" && !validHostname(v) {
					p.Errorf(yamlconf.Deref(f.Val), "%s: %q is not a host name", key, v)
				} else {
					s.VerifySNI = v
				}
			}
		case "verify_timeout":
			if d, ok := p.duration(f.Val, key); ok {
				s.VerifyTimeout = d
			}
		default:
			p.Unknown(f.Key, where, known)
		}
	}
}

func (p *parser) path(n *yaml.Node, key string) (string, bool) {
	s, ok := p.NonEmpty(n, key)
	if !ok {
		return "", false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	return filepath.Clean(s), true
}

func (p *parser) integer(n *yaml.Node, key string) (int, bool) {
	s, ok := p.Scalar(n, key)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(s.Value)
	if err != nil || s.ShortTag() != "!!int" {
		p.Errorf(s, "%s: want a whole number, got %s", key, yamlconf.Describe(s))
		return 0, false
	}
	return v, true
}

func (p *parser) duration(n *yaml.Node, key string) (time.Duration, bool) {
	s, ok := p.Scalar(n, key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s.Value)
	if err != nil || d <= 0 {
		p.Errorf(s, "%s: want a positive duration such as 30s or 2m, got %s", key, yamlconf.Describe(s))
		return 0, false
	}
	return d, true
}

// mode parses a file mode written in octal ("0640", 0640 or "0o640").
func (p *parser) mode(n *yaml.Node, key string) (os.FileMode, bool) {
	s, ok := p.Scalar(n, key)
	if !ok {
		return 0, false
	}
	v := strings.TrimPrefix(strings.TrimPrefix(s.Value, "0o"), "0O")
	m, err := strconv.ParseUint(v, 8, 32)
	if err != nil || v == "" || m > 0o777 {
		p.Errorf(s, "%s: want an octal file mode such as \"0640\", got %s", key, yamlconf.Describe(s))
		return 0, false
	}
	if m&0o400 == 0 {
		p.Errorf(s, "%s: %04o does not let the owner read the file", key, m)
		return 0, false
	}
	return os.FileMode(m), true
}

var accountRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

// account is a user or group name or a numeric id.
func (p *parser) account(n *yaml.Node, key string) (string, bool) {
	s, ok := p.Text(n, key)
	if !ok || s == "" {
		return s, ok
	}
	if !accountRE.MatchString(s) {
		p.Errorf(yamlconf.Deref(n), "%s: %q is not a user or group name or a numeric id", key, s)
		return "", false
	}
	return s, true
}

func (p *parser) strings(n *yaml.Node, key string) ([]string, bool) {
	items, ok := p.Seq(n, key)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	good := true
	for _, it := range items {
		s, ok := p.Text(it, key)
		if !ok {
			good = false
			continue
		}
		if s == "" {
			p.Errorf(yamlconf.Deref(it), "%s: empty item", key)
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
	if s := yamlconf.Deref(n); s != nil && s.Kind == yaml.ScalarNode && !yamlconf.IsNull(s) {
		p.Errorf(s, "%s: want the command as a list of arguments, such as [systemctl, reload, nginx] (no shell is used), got %s", key, yamlconf.Describe(s))
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
	items, ok := p.Seq(n, key)
	if !ok {
		return nil, false
	}
	var out []string
	good := true
	for _, it := range items {
		s, ok := p.Text(it, key)
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
			p.Errorf(yamlconf.Deref(it), "%s: %q is not host:port (IPv6: [::1]:443)", key, s)
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
			p.Errorf(yamlconf.Deref(n), "%s: %q is not a domain name", key, s)
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
	items, ok := p.Seq(n, "trusted_keys")
	if !ok {
		return nil
	}
	var out []ed25519.PublicKey
	for _, it := range items {
		s, ok := p.Text(it, "trusted_keys")
		if !ok {
			continue
		}
		k, err := bundle.ParsePublicKey(s)
		if err != nil {
			p.Errorf(yamlconf.Deref(it), "trusted_keys: %v (copy it from signing.pub in certpush's state directory)", err)
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
