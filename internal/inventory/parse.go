package inventory

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
)

// MaxHostListSize bounds a host-list file.
const MaxHostListSize = 4 << 20

// Load reads the configuration file at path, parses and validates it, and
// reads the host-list files it names. See Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration held in data, as if read
// from path: relative paths are resolved against path's directory, and
// host-list files are read from disk. Every problem is reported as an
// *Error naming the file and line; all of them are joined with
// errors.Join.
func Parse(path string, data []byte) (*Config, error) {
	p := &parser{file: path, dir: filepath.Dir(path), rank: map[string]int{path: 0}}
	cfg := p.parse(data)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i], p.errs[j]
			if ra, rb := p.rank[a.File], p.rank[b.File]; ra != rb {
				return ra < rb
			}
			// Problems without a line (the file as a whole) come last.
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
	errs []*Error
	rank map[string]int // order in which files are reported
}

// pair is one key and its value in a mapping.
type pair struct{ key, val *yaml.Node }

func (p *parser) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) add(errs []error) {
	for _, err := range errs {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{File: p.file, Msg: err.Error()}
		}
		if _, ok := p.rank[e.File]; !ok {
			p.rank[e.File] = len(p.rank)
		}
		p.errs = append(p.errs, e)
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *parser) yamlError(err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: m[2]})
		return
	}
	p.errs = append(p.errs, &Error{File: p.file, Msg: strings.TrimPrefix(msg, "yaml: ")})
}

func (p *parser) parse(data []byte) *Config {
	cfg := &Config{
		Path:     p.file,
		StateDir: DefaultStateDir,
		SSH: SSH{
			User:           DefaultUser,
			Port:           DefaultPort,
			Parallel:       DefaultParallel,
			Timeout:        DefaultTimeout,
			ConnectTimeout: DefaultConnectTimeout,
			Incoming:       DefaultIncoming,
			Command:        DefaultCommand,
		},
		ACME: ACME{
			Directory: DefaultDirectory,
			KeyType:   DefaultKeyType,
		},
		Certs: map[string]*Cert{},
		Hosts: map[string]*Host{},
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
	var certsKey, certsVal, hostsVal *yaml.Node
	for _, f := range p.pairs(root, "") {
		switch f.key.Value {
		case "state_dir":
			if s, ok := p.path(f.val, "state_dir"); ok {
				cfg.StateDir = s
			}
		case "ssh":
			p.ssh(f.val, &cfg.SSH)
		case "acme":
			p.acme(f.val, &cfg.ACME)
		case "certs":
			certsKey, certsVal = f.key, f.val
		case "hosts":
			hostsVal = f.val
		default:
			p.unknown(f.key, "")
		}
	}
	if cfg.SSH.KnownHosts == "" {
		cfg.SSH.KnownHosts = filepath.Join(cfg.StateDir, "known_hosts")
	}
	groups := p.hosts(hostsVal, cfg)
	p.certs(certsKey, certsVal, cfg, groups)
	return cfg
}

// deref follows aliases to the node they name.
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

func (p *parser) unknown(key *yaml.Node, where string) {
	if where == "" {
		p.errf(key, "unknown key %q", key.Value)
		return
	}
	p.errf(key, "unknown key %q in %s", key.Value, where)
}

// pairs returns the keys and values of a mapping, with YAML merge keys
// (<<) applied; keys written in the mapping win over merged ones. A null
// value is an empty mapping.
func (p *parser) pairs(n *yaml.Node, where string) []pair {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, "%s: want a mapping, got %s", label(where), describe(n))
		return nil
	}
	var out []pair
	p.collect(n, where, &out, map[string]bool{}, map[*yaml.Node]bool{n: true}, 0)
	return out
}

// collect appends the pairs of n not yet seen, then those of the mappings
// it merges; each mapping is visited once.
func (p *parser) collect(n *yaml.Node, where string, out *[]pair, seen map[string]bool, visited map[*yaml.Node]bool, depth int) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			p.errf(n.Content[i], "%s: a key must be a plain string, got %s", label(where), describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if seen[k.Value] {
			if depth == 0 {
				p.errf(k, "duplicate key %q in %s", k.Value, label(where))
			}
			continue
		}
		seen[k.Value] = true
		*out = append(*out, pair{k, v})
	}
	for _, m := range merges {
		m = deref(m)
		if depth >= 8 {
			p.errf(m, "%s: merge (<<) nested too deep", label(where))
			return
		}
		switch {
		case m != nil && m.Kind == yaml.MappingNode:
			if !visited[m] {
				visited[m] = true
				p.collect(m, where, out, seen, visited, depth+1)
			}
		case m != nil && m.Kind == yaml.SequenceNode:
			for _, e := range m.Content {
				if e = deref(e); e != nil && e.Kind == yaml.MappingNode {
					if !visited[e] {
						visited[e] = true
						p.collect(e, where, out, seen, visited, depth+1)
					}
				} else {
					p.errf(e, "%s: merge (<<) wants a mapping or a list of mappings, got %s", label(where), describe(e))
				}
			}
		default:
			p.errf(m, "%s: merge (<<) wants a mapping or a list of mappings, got %s", label(where), describe(m))
		}
	}
}

// scalar returns n as a scalar node, reporting anything else.
func (p *parser) scalar(n *yaml.Node, key string) (*yaml.Node, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode {
		p.errf(n, "%s: want a single value, got %s", key, describe(n))
		return nil, false
	}
	return n, true
}

// str returns a scalar's text; null is "".
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

// nonEmpty is str, reporting an empty value.
func (p *parser) nonEmpty(n *yaml.Node, key string) (string, bool) {
	s, ok := p.str(n, key)
	if ok && strings.TrimSpace(s) == "" {
		p.errf(deref(n), "%s: must not be empty", key)
		return "", false
	}
	return s, ok
}

// path is nonEmpty, resolved against the config file's directory.
func (p *parser) path(n *yaml.Node, key string) (string, bool) {
	s, ok := p.nonEmpty(n, key)
	if !ok {
		return "", false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(p.dir, s)
	}
	return s, true
}

func (p *parser) integer(n *yaml.Node, key string) (int, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0, false
	}
	var v int
	if s.ShortTag() != "!!int" || s.Decode(&v) != nil {
		p.errf(s, "%s: want an integer, got %s", key, describe(s))
		return 0, false
	}
	return v, true
}

func (p *parser) port(n *yaml.Node, key string) (int, bool) {
	v, ok := p.integer(n, key)
	if ok && (v < 1 || v > 65535) {
		p.errf(deref(n), "%s: %d out of range 1..65535", key, v)
		return 0, false
	}
	return v, ok
}

func (p *parser) boolean(n *yaml.Node, key string) (bool, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return false, false
	}
	var v bool
	if s.ShortTag() != "!!bool" || s.Decode(&v) != nil {
		p.errf(s, "%s: want true or false, got %s", key, describe(s))
		return false, false
	}
	return v, true
}

// duration parses a Go duration (90s, 15m, 720h); negative ones are
// reported, and with positive so is zero.
func (p *parser) duration(n *yaml.Node, key string, positive bool) (time.Duration, bool) {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s.Value)
	if err != nil || isNull(s) {
		p.errf(s, "%s: bad duration %s (write e.g. 90s, 15m, 720h)", key, describe(s))
		return 0, false
	}
	if d < 0 || positive && d == 0 {
		p.errf(s, "%s: duration %s must be positive", key, s.Value)
		return 0, false
	}
	return d, true
}

// list returns the scalar items of a sequence; null is an empty list.
func (p *parser) list(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	n = deref(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s: want a list, got %s", key, describe(n))
		return nil, false
	}
	var out []*yaml.Node
	ok := true
	for i, e := range n.Content {
		item := fmt.Sprintf("%s[%d]", key, i)
		s, good := p.str(e, item)
		if good && s == "" {
			p.errf(deref(e), "%s: must not be empty", item)
			good = false
		}
		if !good {
			ok = false
			continue
		}
		out = append(out, deref(e))
	}
	return out, ok
}

func values(nodes []*yaml.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Value
	}
	return out
}

// endpoints is a list of host:port.
func (p *parser) endpoints(n *yaml.Node, key string) ([]string, bool) {
	items, ok := p.list(n, key)
	for _, it := range items {
		if err := checkEndpoint(it.Value, false); err != nil {
			p.errf(it, "%s: %v", key, err)
			ok = false
		}
	}
	return values(items), ok
}

func (p *parser) ssh(n *yaml.Node, s *SSH) {
	for _, f := range p.pairs(n, "ssh") {
		key := "ssh." + f.key.Value
		switch f.key.Value {
		case "user":
			if v, ok := p.user(f.val, key); ok {
				s.User = v
			}
		case "port":
			if v, ok := p.port(f.val, key); ok {
				s.Port = v
			}
		case "identity":
			if v, ok := p.path(f.val, key); ok {
				s.Identity = v
			}
		case "known_hosts":
			if v, ok := p.path(f.val, key); ok {
				s.KnownHosts = v
			}
		case "parallel":
			if v, ok := p.integer(f.val, key); ok {
				if v < 1 {
					p.errf(deref(f.val), "%s: must be at least 1, got %d", key, v)
				} else {
					s.Parallel = v
				}
			}
		case "timeout":
			if v, ok := p.duration(f.val, key, true); ok {
				s.Timeout = v
			}
		case "connect_timeout":
			if v, ok := p.duration(f.val, key, true); ok {
				s.ConnectTimeout = v
			}
		case "incoming":
			if v, ok := p.nonEmpty(f.val, key); ok {
				s.Incoming = v
			}
		case "command":
			if v, ok := p.nonEmpty(f.val, key); ok {
				s.Command = v
			}
		default:
			p.unknown(f.key, "ssh")
		}
	}
}

func (p *parser) user(n *yaml.Node, key string) (string, bool) {
	v, ok := p.str(n, key)
	if !ok {
		return "", false
	}
	if err := checkUser(v); err != nil {
		p.errf(deref(n), "%s: %v", key, err)
		return "", false
	}
	return v, true
}

func (p *parser) keyType(n *yaml.Node, key string) (string, bool) {
	v, ok := p.str(n, key)
	if ok && !slices.Contains(KeyTypes, v) {
		p.errf(deref(n), "%s: unknown key type %q (use %s)", key, v, strings.Join(KeyTypes, ", "))
		return "", false
	}
	return v, ok
}

func (p *parser) acme(n *yaml.Node, a *ACME) {
	for _, f := range p.pairs(n, "acme") {
		key := "acme." + f.key.Value
		switch f.key.Value {
		case "directory":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.errf(deref(f.val), "%s: bad URL %q: want https://host/path", key, v)
				break
			}
			a.Directory = v
		case "email":
			v, ok := p.str(f.val, key)
			if !ok {
				break
			}
			if local, domain, found := strings.Cut(v, "@"); v != "" && (!found || local == "" || domain == "" || strings.ContainsAny(v, " <>,") || strings.Contains(domain, "@")) {
				p.errf(deref(f.val), "%s: bad address %q", key, v)
				break
			}
			a.Email = v
		case "ca_file":
			if v, ok := p.path(f.val, key); ok {
				a.CAFile = v
			}
		case "eab":
			a.EAB = p.eab(f.key, f.val)
		case "key_type":
			if v, ok := p.keyType(f.val, key); ok && v != "" {
				a.KeyType = v
			}
		case "preferred_chain":
			if v, ok := p.str(f.val, key); ok {
				a.PreferredChain = v
			}
		case "dns_resolvers":
			if v, ok := p.endpoints(f.val, key); ok {
				a.DNSResolvers = v
			}
		case "propagation_timeout":
			if v, ok := p.duration(f.val, key, true); ok {
				a.PropagationTimeout = v
			}
		case "disable_propagation_check":
			if v, ok := p.boolean(f.val, key); ok {
				a.DisablePropagationCheck = v
			}
		default:
			p.unknown(f.key, "acme")
		}
	}
}

func (p *parser) eab(keyNode, n *yaml.Node) *EAB {
	if isNull(deref(n)) {
		return nil
	}
	if n = deref(n); n.Kind != yaml.MappingNode {
		p.errf(n, "acme.eab: want a mapping, got %s", describe(n))
		return nil
	}
	e := &EAB{}
	for _, f := range p.pairs(n, "acme.eab") {
		key := "acme.eab." + f.key.Value
		switch f.key.Value {
		case "kid":
			if v, ok := p.nonEmpty(f.val, key); ok {
				e.KID = v
			}
		case "hmac_key":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err != nil {
				p.errf(deref(f.val), "%s: not base64url", key)
				break
			}
			e.HMACKey = v
		default:
			p.unknown(f.key, "acme.eab")
		}
	}
	if e.KID == "" || e.HMACKey == "" {
		p.errf(keyNode, "acme.eab: kid and hmac_key are both required")
		return nil
	}
	return e
}

// hosts parses the hosts section and returns the group names, each with
// the nodes that mention it.
func (p *parser) hosts(n *yaml.Node, cfg *Config) map[string][]*yaml.Node {
	groups := map[string][]*yaml.Node{}
	for _, f := range p.pairs(n, "hosts") {
		name := f.key.Value
		if err := checkHostName(name); err != nil {
			p.errf(f.key, "hosts: bad host name: %v", err)
			continue
		}
		where := "hosts." + name
		h := &Host{Name: name}
		hasAddress := false
		for _, g := range p.pairs(f.val, where) {
			key := where + "." + g.key.Value
			switch g.key.Value {
			case "address":
				v, ok := p.nonEmpty(g.val, key)
				if !ok {
					hasAddress = true // reported already
					break
				}
				a, err := checkAddress(v)
				if err != nil {
					p.errf(deref(g.val), "%s: bad address %q: %v", key, v, err)
				}
				h.Address, hasAddress = a, true
			case "port":
				if v, ok := p.port(g.val, key); ok {
					h.Port = v
				}
			case "user":
				if v, ok := p.user(g.val, key); ok {
					h.User = v
				}
			case "groups":
				items, _ := p.list(g.val, key)
				for _, it := range items {
					if err := checkHostName(it.Value); err != nil {
						p.errf(it, "%s: bad group name: %v", key, err)
						continue
					}
					if slices.Contains(h.Groups, it.Value) {
						continue
					}
					h.Groups = append(h.Groups, it.Value)
					groups[it.Value] = append(groups[it.Value], it)
				}
			case "verify":
				if v, ok := p.endpoints(g.val, key); ok {
					h.Verify = v
				}
			case "incoming":
				if v, ok := p.nonEmpty(g.val, key); ok {
					h.Incoming = v
				}
			case "command":
				if v, ok := p.nonEmpty(g.val, key); ok {
					h.Command = v
				}
			case "webroot":
				if v, ok := p.nonEmpty(g.val, key); ok {
					if !path.IsAbs(v) {
						p.errf(g.val, "%s: webroot must be an absolute path", key)
					}
					h.Webroot = path.Clean(v)
				}
			default:
				p.unknown(g.key, where)
			}
		}
		if !hasAddress {
			p.errf(f.key, "%s: address is required", where)
		}
		*h = cfg.withDefaults(*h)
		cfg.Hosts[name] = h
	}
	for g, nodes := range groups {
		if _, ok := cfg.Hosts[g]; ok {
			for _, n := range nodes {
				p.errf(n, "group %q has the name of a host; rename one of them", g)
			}
		}
	}
	return groups
}

func (p *parser) certs(keyNode, n *yaml.Node, cfg *Config, groups map[string][]*yaml.Node) {
	entries := p.pairs(n, "certs")
	if len(entries) == 0 {
		if keyNode != nil {
			p.errf(keyNode, "no certificates configured")
		} else {
			p.errf(nil, "no certificates configured")
		}
		return
	}
	for _, f := range entries {
		name := f.key.Value
		if err := bundle.ValidName(name); err != nil {
			p.errf(f.key, "certs: %v", err)
			continue
		}
		if c := p.cert(f.key, f.val, cfg, groups); c != nil {
			cfg.Certs[name] = c
			cfg.CertOrder = append(cfg.CertOrder, name)
		}
	}
}

func (p *parser) cert(keyNode, n *yaml.Node, cfg *Config, groups map[string][]*yaml.Node) *Cert {
	name := keyNode.Value
	where := "certs." + name
	c := &Cert{Name: name, Install: InstallNow}
	var canary []*yaml.Node
	var canaryKey string
	var domainsKey *yaml.Node
	hostsFileOK := true
	for _, f := range p.pairs(n, where) {
		key := where + "." + f.key.Value
		switch f.key.Value {
		case "domains":
			domainsKey = f.key
			items, ok := p.list(f.val, key)
			for _, it := range items {
				d, err := checkDomain(it.Value)
				if err != nil {
					p.errf(it, "%s: %v", key, err)
					continue
				}
				if slices.Contains(c.Domains, d) {
					p.errf(it, "%s: duplicate domain %q", key, d)
					continue
				}
				c.Domains = append(c.Domains, d)
			}
			if ok && len(items) == 0 {
				p.errf(f.key, "%s: must list at least one domain", key)
			}
		case "hosts":
			items, _ := p.list(f.val, key)
			for _, it := range items {
				_, isHost := cfg.Hosts[it.Value]
				_, isGroup := groups[it.Value]
				if !isHost && !isGroup {
					p.errf(it, "%s: unknown host or group %q", key, it.Value)
					continue
				}
				if !slices.Contains(c.Hosts, it.Value) {
					c.Hosts = append(c.Hosts, it.Value)
				}
			}
		case "hosts_file":
			v, ok := p.path(f.val, key)
			if !ok {
				hostsFileOK = false
				break
			}
			c.HostsFile = v
			if !p.hostsFile(deref(f.val), key, c, cfg, groups) {
				hostsFileOK = false
			}
		case "install":
			v, ok := p.str(f.val, key)
			if !ok {
				break
			}
			if v != InstallNow && v != InstallCron {
				p.errf(deref(f.val), "%s: unknown install mode %q (use %s or %s)", key, v, InstallNow, InstallCron)
				break
			}
			c.Install = v
		case "canary":
			canary, _ = p.list(f.val, key)
			canaryKey = key
		case "verify_sni":
			v, ok := p.str(f.val, key)
			if !ok || v == "" {
				break
			}
			if err := checkDNSName(v, false); err != nil {
				p.errf(deref(f.val), "%s: bad server name %q: %v", key, v, err)
				break
			}
			c.VerifySNI = strings.ToLower(v)
		case "verify_ports":
			c.VerifyPorts = p.ports(f.val, key)
		case "renew_before":
			if v, ok := p.duration(f.val, key, false); ok {
				c.RenewBefore = v
			}
		case "key_type":
			if v, ok := p.keyType(f.val, key); ok {
				c.KeyType = v
			}
		case "preferred_chain":
			if v, ok := p.str(f.val, key); ok {
				c.PreferredChain = v
			}
		case "challenge":
			c.Challenge = p.challenge(f.key, f.val, key)
		default:
			p.unknown(f.key, where)
		}
	}
	if domainsKey == nil {
		p.errf(keyNode, "%s: domains is required: list the names the certificate covers", where)
	}

	// Canary hosts are host names among the cert's hosts.
	members := map[string]bool{}
	for _, h := range cfg.resolve(c) {
		members[h.Name] = true
	}
	for _, it := range canary {
		switch {
		case members[it.Value]:
			if !slices.Contains(c.Canary, it.Value) {
				c.Canary = append(c.Canary, it.Value)
			}
		case groups[it.Value] != nil && cfg.Hosts[it.Value] == nil:
			p.errf(it, "%s: %q is a group; list canary hosts by name", canaryKey, it.Value)
		case !hostsFileOK:
			// The host may be in the unreadable host list.
		case cfg.Hosts[it.Value] != nil:
			p.errf(it, "%s: host %q is not among the hosts of %s", canaryKey, it.Value, name)
		default:
			p.errf(it, "%s: unknown host %q", canaryKey, it.Value)
		}
	}
	return c
}

// hostsFile reads and parses a cert's host list, merging entries that name
// a configured host.
func (p *parser) hostsFile(n *yaml.Node, key string, c *Cert, cfg *Config, groups map[string][]*yaml.Node) bool {
	data, err := readHostList(c.HostsFile)
	if err != nil {
		p.errf(n, "%s: %v", key, err)
		return false
	}
	entries, errs := parseHostList(c.HostsFile, data, cfg.SSH)
	merged := map[string]int{} // configured host name -> line
	for _, e := range entries {
		if _, ok := groups[e.Name]; ok && cfg.Hosts[e.Name] == nil {
			errs = append(errs, &Error{File: c.HostsFile, Line: e.line, Msg: fmt.Sprintf("%q is a group name, not a host", e.Name)})
			continue
		}
		h := e.Host
		// An entry naming a configured host (host, or host:port) is that
		// host, with the entry's user and port.
		conf, ok := cfg.Hosts[e.Name]
		if !ok && e.setPort {
			conf, ok = cfg.Hosts[e.Address]
		}
		if ok {
			if first, dup := merged[conf.Name]; dup {
				errs = append(errs, &Error{File: c.HostsFile, Line: e.line, Msg: fmt.Sprintf("host %q already listed on line %d", conf.Name, first)})
				continue
			}
			merged[conf.Name] = e.line
			h = copyHost(*conf)
			if e.setUser {
				h.User = e.User
			}
			if e.setPort {
				h.Port = e.Port
			}
		}
		c.listed = append(c.listed, h)
	}
	p.add(errs)
	return len(errs) == 0
}

func readHostList(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("read host list: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read host list: %s is not a regular file", name)
	}
	if fi.Size() > MaxHostListSize {
		return nil, fmt.Errorf("read host list: %s is larger than %d bytes", name, MaxHostListSize)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read host list: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxHostListSize+1))
	if err != nil {
		return nil, fmt.Errorf("read host list: %w", err)
	}
	if len(data) > MaxHostListSize {
		return nil, fmt.Errorf("read host list: %s is larger than %d bytes", name, MaxHostListSize)
	}
	return data, nil
}

func (p *parser) ports(n *yaml.Node, key string) []int {
	n = deref(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, "%s: want a list, got %s", key, describe(n))
		return nil
	}
	var out []int
	for i, e := range n.Content {
		if v, ok := p.port(e, fmt.Sprintf("%s[%d]", key, i)); ok && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) challenge(keyNode, n *yaml.Node, where string) *Challenge {
	if isNull(deref(n)) {
		return nil
	}
	ch := &Challenge{}
	set := map[string]*yaml.Node{}
	for _, f := range p.pairs(n, where) {
		key := where + "." + f.key.Value
		set[f.key.Value] = f.key
		switch f.key.Value {
		case "type":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if v != ChallengeDNS01 && v != ChallengeHTTP01 {
				p.errf(deref(f.val), "%s: unknown challenge type %q (use %s or %s)", key, v, ChallengeDNS01, ChallengeHTTP01)
				break
			}
			ch.Type = v
		case "provider":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if !validProvider(v) {
				p.errf(deref(f.val), "%s: bad provider name %q (a lego DNS provider code such as route53, or exec)", key, v)
				break
			}
			ch.Provider = v
		case "mode":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if v != ModeWebrootPush && v != ModeStandalone {
				p.errf(deref(f.val), "%s: unknown mode %q (use %s or %s)", key, v, ModeWebrootPush, ModeStandalone)
				break
			}
			ch.Mode = v
		case "webroot":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if !path.IsAbs(v) {
				p.errf(deref(f.val), "%s: %q must be an absolute path (a directory on every host)", key, v)
				break
			}
			ch.Webroot = path.Clean(v)
		case "address":
			v, ok := p.nonEmpty(f.val, key)
			if !ok {
				break
			}
			if err := checkEndpoint(v, true); err != nil {
				p.errf(deref(f.val), "%s: %v", key, err)
				break
			}
			ch.Address = v
		case "resolvers":
			if v, ok := p.endpoints(f.val, key); ok {
				ch.Resolvers = v
			}
		case "propagation_timeout":
			if v, ok := p.duration(f.val, key, true); ok {
				ch.PropagationTimeout = v
			}
		default:
			p.unknown(f.key, where)
		}
	}
	only := func(keys []string, what string) {
		for _, k := range keys {
			if kn := set[k]; kn != nil {
				p.errf(kn, "%s.%s: only applies to %s", where, k, what)
			}
		}
	}
	switch ch.Type {
	case "":
		if set["type"] == nil {
			p.errf(keyNode, "%s: type is required (%s or %s)", where, ChallengeDNS01, ChallengeHTTP01)
		}
	case ChallengeDNS01:
		if set["provider"] == nil {
			p.errf(keyNode, "%s: provider is required for %s (a lego DNS provider code such as route53, or exec)", where, ChallengeDNS01)
		}
		only([]string{"mode", "webroot", "address"}, ChallengeHTTP01)
	case ChallengeHTTP01:
		only([]string{"provider", "resolvers", "propagation_timeout"}, ChallengeDNS01)
		if ch.Mode == "" && set["mode"] == nil {
			ch.Mode = ModeWebrootPush
		}
		switch ch.Mode {
		case ModeWebrootPush:
			if set["webroot"] == nil {
				p.errf(keyNode, "%s: webroot is required for %s mode %s (the directory served at /.well-known/acme-challenge/ is <webroot>/.well-known/acme-challenge/)", where, ChallengeHTTP01, ModeWebrootPush)
			}
			only([]string{"address"}, "mode "+ModeStandalone)
		case ModeStandalone:
			if ch.Address == "" && set["address"] == nil {
				ch.Address = DefaultStandaloneAddr
			}
			only([]string{"webroot"}, "mode "+ModeWebrootPush)
		}
	}
	return ch
}

// validProvider checks the shape of a lego DNS provider code; whether
// lego knows it is checked when the provider is created.
func validProvider(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return false
		}
	}
	return true
}
