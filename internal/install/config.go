package install

import (
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/store"
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
	// AllowUnsigned, set explicitly, lets a node without trusted_keys
	// install bundles whatever their signature; certnode warns on every
	// run.
	AllowUnsigned bool
	// Roots are the roots every certificate's chain must verify to, unless
	// the certificate sets its own; nil means the system's roots.
	Roots    *x509.CertPool
	Keep     int           // versions kept per certificate, current included
	Lock     string        // lock file
	Timeout  time.Duration // per test or reload command
	Defaults Settings
	Certs    map[string]*Cert // the only names that are installed
	// Store is where certnode pull reads from; nil when not configured.
	Store *store.Config
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
	// HAProxy, when set, updates a running HAProxy through its runtime
	// API instead of reloading it (reload stays the fallback).
	HAProxy *HAProxy
}

// Cert is one configured certificate.
type Cert struct {
	Name    string
	Domains []string // names the certificate must cover; nil for the manifest's
	// Anchor is what the certificate's chain must verify to: roots:
	// (the certificate's, else the file's, else the system's), and
	// allow_self_signed.
	Anchor bundle.Anchor
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
// the problem is about the file as a whole): the one config error type,
// shared with certpush's configuration.
type ConfigError = yamlconf.Error

// LoadConfig reads and parses the configuration file at path (at most
// MaxConfigSize bytes).
func LoadConfig(path string) (*Config, error) {
	data, err := yamlconf.ReadFile(path, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates a configuration held in data, as if
// read from path (relative paths in it are resolved against path's
// directory). Unknown keys and bad values are errors; every problem is a
// *ConfigError naming the file and line, all joined with errors.Join.
func ParseConfig(path string, data []byte) (*Config, error) {
	// Merge keys are refused: the file is short enough to write out, and
	// defaults already covers sharing.
	p := &parser{yamlconf.Checker{File: path, NoMerge: true, MergeHint: "use defaults"}}
	cfg := p.parse(data)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

type parser struct {
	yamlconf.Checker
}

var topKeys = []string{"root", "incoming", "trusted_keys", "allow_unsigned", "roots", "keep", "lock", "timeout", "defaults", "certs", "store"}

var settingKeys = []string{"owner", "group", "key_mode", "cert_mode", "test", "reload", "verify", "verify_sni", "verify_timeout", "haproxy"}

func (p *parser) parse(data []byte) *Config {
	cfg := &Config{
		Path:     p.File,
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
	var certsKey, certsVal, defaultsVal, rootKey, incomingKey, keysKey, keysVal, unsignedKey *yaml.Node
	for _, f := range p.Pairs(root, "") {
		switch f.Key.Value {
		case "root":
			rootKey = f.Key
			if s, ok := p.Path(f.Val, "root"); ok {
				cfg.Root = s
			}
		case "incoming":
			incomingKey = f.Key
			if s, ok := p.Path(f.Val, "incoming"); ok {
				cfg.Incoming = s
			}
		case "trusted_keys":
			keysKey, keysVal = f.Key, f.Val
			cfg.TrustedKeys = p.trustedKeys(f.Val)
		case "allow_unsigned":
			unsignedKey = f.Key
			cfg.AllowUnsigned, _ = p.Bool(f.Val, "allow_unsigned")
		case "roots":
			cfg.Roots, _ = p.Roots(f.Val, "roots")
		case "keep":
			if n, ok := p.Int(f.Val, "keep"); ok {
				if n < 2 {
					p.Errorf(yamlconf.Deref(f.Val), "keep: %d, want 2 or more (the current version and one to roll back to)", n)
				} else {
					cfg.Keep = n
				}
			}
		case "lock":
			if s, ok := p.Text(f.Val, "lock"); ok && s != "" {
				cfg.Lock = p.Resolve(s)
			}
		case "timeout":
			if d, ok := p.Duration(f.Val, "timeout"); ok {
				cfg.Timeout = d
			}
		case "defaults":
			defaultsVal = f.Val
		case "certs":
			certsKey, certsVal = f.Key, f.Val
		case "store":
			cfg.Store = store.ParseYAML(&p.Checker, f.Val, "store", store.NodeKeys)
		default:
			p.Unknown(f.Key, "", topKeys)
		}
	}
	if cfg.Lock == "" {
		cfg.Lock = filepath.Join(cfg.Root, ".lock")
	}
	p.signatures(cfg, root, keysKey, keysVal, unsignedKey)
	if within(cfg.Root, cfg.Incoming) || within(cfg.Incoming, cfg.Root) {
		n := incomingKey
		if n == nil {
			n = rootKey
		}
		p.Errorf(n, "root %s and incoming %s must not be inside one another: the push account owns incoming", cfg.Root, cfg.Incoming)
	}
	p.settings(defaultsVal, "defaults", &cfg.Defaults)
	p.certs(root, certsKey, certsVal, cfg)
	return cfg
}

// certs parses the certs section (at key and val; root when it is
// missing) into cfg.Certs, each certificate starting from cfg.Defaults.
func (p *parser) certs(root, key, val *yaml.Node, cfg *Config) {
	certs := p.Pairs(val, "certs")
	if len(certs) == 0 {
		n := key
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
		c := &Cert{Name: name, Anchor: bundle.Anchor{Roots: cfg.Roots}, Settings: cfg.Defaults}
		c.Settings.Test = cloneArgs(cfg.Defaults.Test)
		c.Settings.Reload = cloneArgs(cfg.Defaults.Reload)
		c.Settings.Verify = cloneArgs(cfg.Defaults.Verify)
		where := "certs." + name
		var rest []yamlconf.Pair
		for _, g := range p.Pairs(f.Val, where) {
			switch g.Key.Value {
			case "domains":
				if d, ok := p.Domains(g.Val, where+".domains"); ok && len(d) > 0 {
					c.Domains = d
				}
			case "roots":
				if pool, ok := p.Roots(g.Val, where+".roots"); ok {
					c.Anchor.Roots = pool
				}
			case "allow_self_signed":
				c.Anchor.AllowSelfSigned, _ = p.Bool(g.Val, where+".allow_self_signed")
			default:
				rest = append(rest, g)
			}
		}
		p.settingPairs(rest, where, &c.Settings, append([]string{"domains", "roots", "allow_self_signed"}, settingKeys...))
		cfg.Certs[name] = c
	}
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
			if a, ok := p.Endpoints(f.Val, key); ok {
				s.Verify = a
			}
		case "verify_sni":
			if v, ok := p.ServerName(f.Val, key); ok {
				s.VerifySNI = v
			}
		case "verify_timeout":
			if d, ok := p.Duration(f.Val, key); ok {
				s.VerifyTimeout = d
			}
		case "haproxy":
			if h, ok := p.haproxy(f.Val, key); ok {
				s.HAProxy = h
			}
		default:
			p.Unknown(f.Key, where, known)
		}
	}
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

// validAccount reports whether s is a user or group name or a numeric id:
// a letter, digit or underscore, then up to 63 letters, digits, '_', '.'
// or '-', and an optional trailing '$' (a Samba machine account). It is
// written out rather than a package-level regexp because that regexp's
// compilation ({0,63} unrolls into 63 states) was the largest init cost of
// certnode, paid on every start.
func validAccount(s string) bool {
	s = strings.TrimSuffix(s, "$")
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// account is a user or group name or a numeric id.
func (p *parser) account(n *yaml.Node, key string) (string, bool) {
	s, ok := p.Text(n, key)
	if !ok || s == "" {
		return s, ok
	}
	if !validAccount(s) {
		p.Errorf(yamlconf.Deref(n), "%s: %q is not a user or group name or a numeric id", key, s)
		return "", false
	}
	return s, true
}

// argv is a command as a list of arguments, run without a shell. An empty
// list means no command.
func (p *parser) argv(n *yaml.Node, key string) ([]string, bool) {
	if s := yamlconf.Deref(n); s != nil && s.Kind == yaml.ScalarNode && !yamlconf.IsNull(s) {
		p.Errorf(s, "%s: want the command as a list of arguments, such as [systemctl, reload, nginx] (no shell is used), got %s", key, yamlconf.Describe(s))
		return nil, false
	}
	a, ok := p.Strings(n, key)
	if !ok {
		return nil, false
	}
	if len(a) == 0 {
		return nil, true
	}
	return a, true
}

// NoTrustedKeys starts the config error of a node that trusts no
// signing key.
const NoTrustedKeys = "trusted_keys: no signing key is trusted"

// signatures insists that bundles are checked against a trusted key,
// unless allow_unsigned: true says otherwise; the two together are
// contradictory.
func (p *parser) signatures(cfg *Config, root, keysKey, keysVal, unsignedKey *yaml.Node) {
	switch {
	case cfg.AllowUnsigned && keysKey != nil && len(cfg.TrustedKeys) > 0:
		p.Errorf(unsignedKey, "allow_unsigned: true together with trusted_keys: remove allow_unsigned, so that only bundles signed by a trusted key are installed")
	case len(cfg.TrustedKeys) == 0 && !cfg.AllowUnsigned && (keysKey == nil || len(yamlconf.Deref(keysVal).Content) == 0):
		n := keysKey
		if n == nil {
			n = root
		}
		p.Errorf(n, NoTrustedKeys+", so any bundle pushed here would be installed: add the contents of signing.pub from certpush's state directory, or set allow_unsigned: true to accept unsigned bundles knowingly")
	}
}

func (p *parser) trustedKeys(n *yaml.Node) []ed25519.PublicKey {
	items, _ := p.Items(n, "trusted_keys")
	var out []ed25519.PublicKey
	for _, it := range items {
		k, err := bundle.ParsePublicKey(it.Value)
		if err != nil {
			p.Errorf(it, "trusted_keys: %v (copy it from signing.pub in certpush's state directory)", err)
			continue
		}
		out = append(out, k)
	}
	return out
}
