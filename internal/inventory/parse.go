package inventory

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/yamlconf"
)

// MaxFileSize bounds the configuration file and every host-list file:
// room for tens of thousands of hosts.
const MaxFileSize = 4 << 20

// Load reads the configuration file at path, parses and validates it, and
// reads the host-list files it names. See Parse.
func Load(path string) (*Config, error) {
	data, err := yamlconf.ReadFile(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration held in data, as if read
// from path: relative paths are resolved against path's directory, and
// host-list files are read from disk. Every problem is reported as an
// *Error naming the file and line; all of them are joined with
// errors.Join, those of the configuration first.
func Parse(path string, data []byte) (*Config, error) {
	p := &parser{Checker: yamlconf.Checker{File: path}, chunked: true}
	cfg := p.parse(data)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

type parser struct {
	yamlconf.Checker
	// chunked lets parse read the hosts: block in batches of entries when
	// the file's layout allows it (see chunks.go).
	chunked bool
	split   bool              // set by parse when it did
	strs    map[string]string // see intern
}

// Known keys of each section, for suggestions when a key is misspelt.
var (
	topKeys       = []string{"state_dir", "ssh", "acme", "roots", "certs", "hosts", "store"}
	sshKeys       = []string{"user", "port", "identity", "known_hosts", "parallel", "timeout", "connect_timeout", "incoming", "command"}
	acmeKeys      = []string{"directory", "email", "ca_file", "eab", "key_type", "preferred_chain", "dns_resolvers", "propagation_timeout", "disable_propagation_check", "profile"}
	eabKeys       = []string{"kid", "hmac_key"}
	hostKeys      = []string{"address", "port", "user", "groups", "verify", "incoming", "command", "install", "webroot", "type", "exec", "timeout"}
	certKeys      = []string{"domains", "hosts", "hosts_file", "install", "canary", "verify_sni", "verify_ports", "renew_before", "key_type", "preferred_chain", "profile", "challenge", "roots", "allow_self_signed", "waves", "pause"}
	challengeKeys = []string{"type", "provider", "mode", "webroot", "address", "resolvers", "propagation_timeout", "wildcard", "persist_until", "issuer_domain_name"}
)

func (p *parser) parse(data []byte) *Config {
	if p.chunked {
		if b, ok := splitHosts(data); ok {
			q := &parser{Checker: yamlconf.Checker{File: p.File}}
			if cfg, ok := q.parseSplit(b); ok {
				p.Problems, p.split = q.Problems, true
				return cfg
			}
		}
	}
	root, ok := p.Document(data)
	if !ok {
		return nil
	}
	cfg := newConfig(p.File)
	top := p.top(root, cfg)
	groups := p.hosts(top.hostsVal, cfg)
	p.certs(top.certsKey, top.certsVal, cfg, groups)
	return cfg
}

// parseSplit parses the file split as b says: the rest of the file, then
// the hosts: entries one at a time. It returns false, having done nothing
// that cannot be thrown away (no host list read), when a part does not
// parse on its own as it should: the whole file must then be parsed.
func (p *parser) parseSplit(b *hostsBlock) (*Config, bool) {
	var rest *yaml.Node
	if !p.quiet(func() { rest, _ = p.Document(b.rest) }) || rest == nil ||
		rest.Kind != yaml.MappingNode || rest.Style&yaml.FlowStyle != 0 {
		return nil, false
	}
	cfg := newConfig(p.File)
	top := p.top(rest, cfg)
	if k := top.hostsKey; k == nil || k.Line != b.keyLine || k.Column != 1 || k.Style != 0 ||
		!yamlconf.IsNull(top.hostsVal) || top.hostsVal.Tag != "!!null" || top.hostsVal.Value != "" {
		return nil, false
	}
	groups := groupLines{}
	seen := make(map[string]bool, len(b.entries))
	for i := 0; i < len(b.entries); i += entriesPerParse {
		pairs, ok := parseEntries(b.data, b.entries[i:min(i+entriesPerParse, len(b.entries))])
		if !ok {
			return nil, false
		}
		for _, f := range pairs {
			// As Pairs does for the whole block: one key per host.
			if seen[f.Key.Value] {
				p.Errorf(f.Key, "duplicate key %q in %s", f.Key.Value, "hosts")
				continue
			}
			seen[f.Key.Value] = true
			p.host(f, cfg, groups)
		}
	}
	p.groupClashes(groups, cfg)
	p.certs(top.certsKey, top.certsVal, cfg, groups)
	return cfg, true
}

// quiet runs f and reports whether it recorded no problem; problems it
// recorded are dropped.
func (p *parser) quiet(f func()) bool {
	saved := p.Problems
	f()
	ok := p.Len() == saved.Len()
	p.Problems = saved
	return ok
}

func newConfig(path string) *Config {
	return &Config{
		Path:     path,
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
}

// topLevel holds the top-level sections read after the others.
type topLevel struct {
	certsKey, certsVal *yaml.Node
	hostsKey, hostsVal *yaml.Node
}

// top reads the top-level keys of root into cfg, but for certs and hosts,
// which it returns.
func (p *parser) top(root *yaml.Node, cfg *Config) topLevel {
	var t topLevel
	for _, f := range p.Pairs(root, "") {
		switch f.Key.Value {
		case "state_dir":
			if s, ok := p.Path(f.Val, "state_dir"); ok {
				cfg.StateDir = s
			}
		case "ssh":
			p.ssh(f.Val, &cfg.SSH)
		case "acme":
			p.acme(f.Val, &cfg.ACME)
		case "roots":
			cfg.Roots, _ = p.Roots(f.Val, "roots")
		case "certs":
			t.certsKey, t.certsVal = f.Key, f.Val
		case "hosts":
			t.hostsKey, t.hostsVal = f.Key, f.Val
		case "store":
			cfg.Store = store.ParseYAML(&p.Checker, f.Val, "store", store.PublisherKeys)
		default:
			p.Unknown(f.Key, "", topKeys)
		}
	}
	if cfg.SSH.KnownHosts == "" {
		cfg.SSH.KnownHosts = filepath.Join(cfg.StateDir, "known_hosts")
	}
	return t
}

func (p *parser) ssh(n *yaml.Node, s *SSH) {
	for _, f := range p.Pairs(n, "ssh") {
		key := "ssh." + f.Key.Value
		switch f.Key.Value {
		case "user":
			if v, ok := p.user(f.Val, key); ok {
				s.User = v
			}
		case "port":
			if v, ok := p.Port(f.Val, key); ok {
				s.Port = v
			}
		case "identity":
			if v, ok := p.Path(f.Val, key); ok {
				s.Identity = v
			}
		case "known_hosts":
			if v, ok := p.Path(f.Val, key); ok {
				s.KnownHosts = v
			}
		case "parallel":
			if v, ok := p.Int(f.Val, key); ok {
				if v < 1 {
					p.Errorf(yamlconf.Deref(f.Val), "%s: must be at least 1, got %d", key, v)
				} else {
					s.Parallel = v
				}
			}
		case "timeout":
			if v, ok := p.Duration(f.Val, key); ok {
				s.Timeout = v
			}
		case "connect_timeout":
			if v, ok := p.Duration(f.Val, key); ok {
				s.ConnectTimeout = v
			}
		case "incoming":
			if v, ok := p.NonEmpty(f.Val, key); ok {
				s.Incoming = v
			}
		case "command":
			if v, ok := p.NonEmpty(f.Val, key); ok {
				s.Command = v
			}
		default:
			p.Unknown(f.Key, "ssh", sshKeys)
		}
	}
}

func (p *parser) user(n *yaml.Node, key string) (string, bool) {
	v, ok := p.Text(n, key)
	if !ok {
		return "", false
	}
	if err := checkUser(v); err != nil {
		p.Errorf(yamlconf.Deref(n), "%s: %v", key, err)
		return "", false
	}
	return v, true
}

func (p *parser) keyType(n *yaml.Node, key string) (string, bool) {
	return p.OneOf(n, key, "key type", KeyTypes...)
}

func (p *parser) acme(n *yaml.Node, a *ACME) {
	for _, f := range p.Pairs(n, "acme") {
		key := "acme." + f.Key.Value
		switch f.Key.Value {
		case "directory":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				p.Errorf(yamlconf.Deref(f.Val), "%s: bad URL %q: want https://host/path", key, v)
				break
			}
			a.Directory = v
		case "email":
			v, ok := p.Text(f.Val, key)
			if !ok {
				break
			}
			if local, domain, found := strings.Cut(v, "@"); v != "" && (!found || local == "" || domain == "" || strings.ContainsAny(v, " <>,") || strings.Contains(domain, "@")) {
				p.Errorf(yamlconf.Deref(f.Val), "%s: bad address %q", key, v)
				break
			}
			a.Email = v
		case "ca_file":
			if v, ok := p.Path(f.Val, key); ok {
				a.CAFile = v
			}
		case "eab":
			a.EAB = p.eab(f.Key, f.Val)
		case "key_type":
			if v, ok := p.keyType(f.Val, key); ok && v != "" {
				a.KeyType = v
			}
		case "preferred_chain":
			if v, ok := p.Text(f.Val, key); ok {
				a.PreferredChain = v
			}
		case "dns_resolvers":
			if v, ok := p.Endpoints(f.Val, key); ok {
				a.DNSResolvers = v
			}
		case "propagation_timeout":
			if v, ok := p.Duration(f.Val, key); ok {
				a.PropagationTimeout = v
			}
		case "disable_propagation_check":
			if v, ok := p.Bool(f.Val, key); ok {
				a.DisablePropagationCheck = v
			}
		case "profile":
			a.Profile = p.profile(f.Val, key)
		default:
			p.Unknown(f.Key, "acme", acmeKeys)
		}
	}
}

func (p *parser) eab(keyNode, n *yaml.Node) *EAB {
	if yamlconf.IsNull(yamlconf.Deref(n)) {
		return nil
	}
	if n = yamlconf.Deref(n); n.Kind != yaml.MappingNode {
		p.Errorf(n, "acme.eab: want a mapping, got %s", yamlconf.Describe(n))
		return nil
	}
	e := &EAB{}
	for _, f := range p.Pairs(n, "acme.eab") {
		key := "acme.eab." + f.Key.Value
		switch f.Key.Value {
		case "kid":
			if v, ok := p.NonEmpty(f.Val, key); ok {
				e.KID = v
			}
		case "hmac_key":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "=")); err != nil {
				p.Errorf(yamlconf.Deref(f.Val), "%s: not base64url", key)
				break
			}
			e.HMACKey = v
		default:
			p.Unknown(f.Key, "acme.eab", eabKeys)
		}
	}
	if e.KID == "" || e.HMACKey == "" {
		p.Errorf(keyNode, "acme.eab: kid and hmac_key are both required")
		return nil
	}
	return e
}

// groupLines holds the group names, each with the lines that mention
// it.
type groupLines map[string][]int

// hosts parses the hosts section and returns the group names.
func (p *parser) hosts(n *yaml.Node, cfg *Config) groupLines {
	groups := groupLines{}
	for _, f := range p.Pairs(n, "hosts") {
		p.host(f, cfg, groups)
	}
	p.groupClashes(groups, cfg)
	return groups
}

// host parses one entry of the hosts section into cfg.Hosts, adding the
// groups it names to groups.
func (p *parser) host(f yamlconf.Pair, cfg *Config, groups groupLines) {
	name := f.Key.Value
	if err := checkHostName(name); err != nil {
		p.Errorf(f.Key, "hosts: bad host name: %v", err)
		return
	}
	where := "hosts." + name
	h := &Host{Name: name}
	hasAddress := false
	set := map[string]*yaml.Node{}
	for _, g := range p.Pairs(f.Val, where) {
		key := where + "." + g.Key.Value
		set[g.Key.Value] = g.Key
		switch g.Key.Value {
		case "type", "exec", "timeout":
			p.execKey(g, key, h)
		case "address":
			v, ok := p.NonEmpty(g.Val, key)
			if !ok {
				hasAddress = true // reported already
				break
			}
			a, err := yamlconf.CheckAddress(v)
			if err != nil {
				p.Errorf(yamlconf.Deref(g.Val), "%s: bad address %q: %v", key, v, err)
			}
			h.Address, hasAddress = a, true
		case "port":
			if v, ok := p.Port(g.Val, key); ok {
				h.Port = v
			}
		case "user":
			if v, ok := p.user(g.Val, key); ok {
				h.User = p.intern(v)
			}
		case "groups":
			items, _ := p.Items(g.Val, key)
			for _, it := range items {
				if err := checkHostName(it.Value); err != nil {
					p.Errorf(it, "%s: bad group name: %v", key, err)
					continue
				}
				if slices.Contains(h.Groups, it.Value) {
					continue
				}
				h.Groups = append(h.Groups, p.intern(it.Value))
				groups[it.Value] = append(groups[it.Value], it.Line)
			}
		case "verify":
			if v, ok := p.Endpoints(g.Val, key); ok {
				h.Verify = v
			}
		case "incoming":
			if v, ok := p.NonEmpty(g.Val, key); ok {
				h.Incoming = p.intern(v)
			}
		case "command":
			if v, ok := p.NonEmpty(g.Val, key); ok {
				h.Command = p.intern(v)
			}
		case "install":
			if v, ok := p.installMode(g.Val, key); ok {
				h.Install = v
			}
		case "webroot":
			if v, ok := p.NonEmpty(g.Val, key); ok {
				if !path.IsAbs(v) {
					p.Errorf(g.Val, "%s: webroot must be an absolute path", key)
				}
				h.Webroot = p.intern(path.Clean(v))
			}
		default:
			p.Unknown(g.Key, where, hostKeys)
		}
	}
	p.checkExecKeys(where, h, set)
	if h.Type == TypeExec {
		p.execNeeds(f.Key, where, h, set)
	} else if !hasAddress {
		p.Errorf(f.Key, "%s: address is required", where)
	}
	*h = cfg.withDefaults(*h)
	cfg.Hosts[name] = h
}

// intern returns s, or an equal string seen before: the settings hosts
// share (user, incoming, command, webroot, group names) are then held
// once, not once a host.
func (p *parser) intern(s string) string {
	if t, ok := p.strs[s]; ok {
		return t
	}
	if p.strs == nil {
		p.strs = map[string]string{}
	}
	if len(p.strs) < 1024 {
		p.strs[s] = s
	}
	return s
}

// groupClashes reports every mention of a group that has a host's name.
func (p *parser) groupClashes(groups groupLines, cfg *Config) {
	for g, lines := range groups {
		if _, ok := cfg.Hosts[g]; ok {
			for _, line := range lines {
				p.Addf(p.File, line, "group %q has the name of a host; rename one of them", g)
			}
		}
	}
}

func (p *parser) certs(keyNode, n *yaml.Node, cfg *Config, groups groupLines) {
	entries := p.Pairs(n, "certs")
	if len(entries) == 0 {
		p.Errorf(keyNode, "no certificates configured")
		return
	}
	for _, f := range entries {
		name := f.Key.Value
		if err := bundle.ValidName(name); err != nil {
			p.Errorf(f.Key, "certs: %v", err)
			continue
		}
		if c := p.cert(f.Key, f.Val, cfg, groups); c != nil {
			cfg.Certs[name] = c
			cfg.CertOrder = append(cfg.CertOrder, name)
		}
	}
}

func (p *parser) cert(keyNode, n *yaml.Node, cfg *Config, groups groupLines) *Cert {
	name := keyNode.Value
	where := "certs." + name
	c := &Cert{Name: name, Install: InstallNow, Anchor: bundle.Anchor{Roots: cfg.Roots}}
	var canary []*yaml.Node
	var canaryKey string
	var waveKey *yaml.Node
	var waveNodes []*yaml.Node
	var domainsKey *yaml.Node
	hostsFileOK := true
	for _, f := range p.Pairs(n, where) {
		key := where + "." + f.Key.Value
		switch f.Key.Value {
		case "domains":
			domainsKey = f.Key
			d, ok := p.Domains(f.Val, key)
			c.Domains = d
			if ok && len(d) == 0 {
				p.Errorf(f.Key, "%s: must list at least one domain", key)
			}
		case "hosts":
			items, _ := p.Items(f.Val, key)
			for _, it := range items {
				_, isHost := cfg.Hosts[it.Value]
				_, isGroup := groups[it.Value]
				if !isHost && !isGroup {
					p.Errorf(it, "%s: unknown host or group %q", key, it.Value)
					continue
				}
				if !slices.Contains(c.Hosts, it.Value) {
					c.Hosts = append(c.Hosts, it.Value)
				}
			}
		case "hosts_file":
			v, ok := p.Path(f.Val, key)
			if !ok {
				hostsFileOK = false
				break
			}
			c.HostsFile = v
			if !p.hostsFile(yamlconf.Deref(f.Val), key, c, cfg, groups) {
				hostsFileOK = false
			}
		case "install":
			if v, ok := p.installMode(f.Val, key); ok {
				c.Install = v
			}
		case "canary":
			canary, _ = p.Items(f.Val, key)
			canaryKey = key
		case "waves":
			waveKey = f.Key
			waveNodes = p.waves(f.Val, key, c)
		case "pause":
			if v, ok := p.DurationOrZero(f.Val, key); ok {
				c.Pause = v
			}
		case "verify_sni":
			if v, ok := p.ServerName(f.Val, key); ok {
				c.VerifySNI = v
			}
		case "verify_ports":
			c.VerifyPorts = p.ports(f.Val, key)
		case "renew_before":
			if v, ok := p.DurationOrZero(f.Val, key); ok {
				c.RenewBefore = v
			}
		case "key_type":
			if v, ok := p.keyType(f.Val, key); ok {
				c.KeyType = v
			}
		case "preferred_chain":
			if v, ok := p.Text(f.Val, key); ok {
				c.PreferredChain = v
			}
		case "profile":
			c.Profile = p.profile(f.Val, key)
		case "challenge":
			c.Challenge = p.challenge(f.Key, f.Val, key)
		case "roots":
			if pool, ok := p.Roots(f.Val, key); ok {
				c.Anchor.Roots = pool
			}
		case "allow_self_signed":
			c.Anchor.AllowSelfSigned, _ = p.Bool(f.Val, key)
		default:
			p.Unknown(f.Key, where, certKeys)
		}
	}
	if domainsKey == nil {
		p.Errorf(keyNode, "%s: domains is required: list the names the certificate covers", where)
	}
	if ch := c.Challenge; ch != nil && ch.Type == ChallengeDNSPersist01 && !ch.Wildcard {
		for _, d := range c.Domains {
			if strings.HasPrefix(d, "*.") {
				p.Errorf(keyNode, "%s: wildcard name %s needs challenge.wildcard: true (policy=wildcard in the dns-persist-01 record)", where, d)
				break
			}
		}
	}

	p.canary(c, canary, canaryKey, hostsFileOK, cfg, groups)
	p.checkWaves(c, waveKey, waveNodes, where+".waves", hostsFileOK, cfg)
	return c
}

// canary checks the canary entries of c (under key), which name hosts
// among its hosts, and keeps them in c.Canary.
func (p *parser) canary(c *Cert, canary []*yaml.Node, canaryKey string, hostsFileOK bool, cfg *Config, groups groupLines) {
	if len(canary) == 0 {
		return
	}
	name := c.Name
	members := cfg.memberSet(c)
	for _, it := range canary {
		switch {
		case members[it.Value]:
			if !slices.Contains(c.Canary, it.Value) {
				c.Canary = append(c.Canary, it.Value)
			}
		case groups[it.Value] != nil && cfg.Hosts[it.Value] == nil:
			p.Errorf(it, "%s: %q is a group; list canary hosts by name", canaryKey, it.Value)
		case !hostsFileOK:
			// The host may be in the unreadable host list.
		case cfg.Hosts[it.Value] != nil:
			p.Errorf(it, "%s: host %q is not among the hosts of %s", canaryKey, it.Value, name)
		default:
			p.Errorf(it, "%s: unknown host %q", canaryKey, it.Value)
		}
	}
}

// installMode reads InstallNow or InstallCron.
func (p *parser) installMode(n *yaml.Node, key string) (string, bool) {
	return p.OneOf(n, key, "install mode", InstallNow, InstallCron)
}

// hostsFile reads and parses a cert's host list, merging entries that name
// a configured host.
func (p *parser) hostsFile(n *yaml.Node, key string, c *Cert, cfg *Config, groups groupLines) bool {
	data, err := yamlconf.ReadFile(c.HostsFile, MaxFileSize)
	if err != nil {
		p.Errorf(n, "%s: read host list: %v", key, err)
		return false
	}
	before := p.Len()
	entries := parseHostList(c.HostsFile, data, cfg.SSH, &p.Problems)
	merged := map[string]int{} // configured host name -> line
	// Kept in entries' own array, filtered in place: a list may hold
	// 100,000 hosts, and a second array of them is 20 MB.
	kept := entries[:0]
	for _, e := range entries {
		if _, ok := groups[e.Name]; ok && cfg.Hosts[e.Name] == nil {
			p.Addf(c.HostsFile, e.line, "%q is a group name, not a host", e.Name)
			continue
		}
		// An entry naming a configured host (host, or host:port) is that
		// host, with the entry's user and port.
		conf, ok := cfg.Hosts[e.Name]
		if !ok && e.setPort {
			conf, ok = cfg.Hosts[e.Address]
		}
		if ok {
			if first, dup := merged[conf.Name]; dup {
				p.Addf(c.HostsFile, e.line, "host %q already listed on line %d", conf.Name, first)
				continue
			}
			merged[conf.Name] = e.line
			h := copyHost(*conf)
			if e.setUser {
				h.User = e.User
			}
			if e.setPort {
				h.Port = e.Port
			}
			e.base, e.merged = &h, true
		}
		kept = append(kept, e)
	}
	c.listed = kept
	return p.Len() == before
}

func (p *parser) ports(n *yaml.Node, key string) []int {
	items, _ := p.Seq(n, key)
	var out []int
	for i, e := range items {
		if v, ok := p.Port(e, fmt.Sprintf("%s[%d]", key, i)); ok && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func (p *parser) challenge(keyNode, n *yaml.Node, where string) *Challenge {
	if yamlconf.IsNull(yamlconf.Deref(n)) {
		return nil
	}
	ch := &Challenge{}
	set := map[string]*yaml.Node{}
	for _, f := range p.Pairs(n, where) {
		key := where + "." + f.Key.Value
		set[f.Key.Value] = f.Key
		switch f.Key.Value {
		case "type":
			ch.Type, _ = p.OneOf(f.Val, key, "challenge type", ChallengeDNS01, ChallengeHTTP01, ChallengeDNSPersist01)
		case "provider":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			if !validProvider(v) {
				p.Errorf(yamlconf.Deref(f.Val), "%s: bad provider name %q (a lego DNS provider code such as route53, or exec)", key, v)
				break
			}
			ch.Provider = v
		case "mode":
			ch.Mode, _ = p.OneOf(f.Val, key, "mode", ModeWebrootPush, ModeStandalone)
		case "webroot":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			if !path.IsAbs(v) {
				p.Errorf(yamlconf.Deref(f.Val), "%s: %q must be an absolute path (a directory on every host)", key, v)
				break
			}
			ch.Webroot = path.Clean(v)
		case "address":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			if err := yamlconf.CheckEndpoint(v, true); err != nil {
				p.Errorf(yamlconf.Deref(f.Val), "%s: %v", key, err)
				break
			}
			ch.Address = v
		case "resolvers":
			if v, ok := p.Endpoints(f.Val, key); ok {
				ch.Resolvers = v
			}
		case "propagation_timeout":
			if v, ok := p.Duration(f.Val, key); ok {
				ch.PropagationTimeout = v
			}
		case "wildcard":
			ch.Wildcard, _ = p.Bool(f.Val, key)
		case "persist_until":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			t, err := parseUntil(v)
			if err != nil {
				p.Errorf(yamlconf.Deref(f.Val), "%s: %v", key, err)
				break
			}
			ch.PersistUntil = t
		case "issuer_domain_name":
			v, ok := p.NonEmpty(f.Val, key)
			if !ok {
				break
			}
			if strings.ContainsAny(v, " ;=") {
				p.Errorf(yamlconf.Deref(f.Val), "%s: bad issuer domain name %q", key, v)
				break
			}
			ch.IssuerDomainName = strings.ToLower(strings.TrimSuffix(v, "."))
		default:
			p.Unknown(f.Key, where, challengeKeys)
		}
	}
	p.challengeNeeds(keyNode, where, ch, set)
	return ch
}

// challengeNeeds reports the keys ch's type and mode need and lacks, and
// those that do not apply to them (set holds the keys given), and fills
// in the defaults of the mode.
func (p *parser) challengeNeeds(keyNode *yaml.Node, where string, ch *Challenge, set map[string]*yaml.Node) {
	only := func(keys []string, what string) {
		for _, k := range keys {
			if kn := set[k]; kn != nil {
				p.Errorf(kn, "%s.%s: only applies to %s", where, k, what)
			}
		}
	}
	switch ch.Type {
	case "":
		if set["type"] == nil {
			p.Errorf(keyNode, "%s: type is required (%s, %s or %s)", where, ChallengeDNS01, ChallengeHTTP01, ChallengeDNSPersist01)
		}
	case ChallengeDNSPersist01:
		only([]string{"provider"}, ChallengeDNS01)
		only([]string{"mode", "webroot", "address"}, ChallengeHTTP01)
	case ChallengeDNS01:
		only([]string{"wildcard", "persist_until", "issuer_domain_name"}, ChallengeDNSPersist01)
		if set["provider"] == nil {
			p.Errorf(keyNode, "%s: provider is required for %s (a lego DNS provider code such as route53, or exec)", where, ChallengeDNS01)
		}
		only([]string{"mode", "webroot", "address"}, ChallengeHTTP01)
	case ChallengeHTTP01:
		only([]string{"provider", "resolvers", "propagation_timeout"}, ChallengeDNS01)
		only([]string{"wildcard", "persist_until", "issuer_domain_name"}, ChallengeDNSPersist01)
		if ch.Mode == "" && set["mode"] == nil {
			ch.Mode = ModeWebrootPush
		}
		switch ch.Mode {
		case ModeWebrootPush:
			if set["webroot"] == nil {
				p.Errorf(keyNode, "%s: webroot is required for %s mode %s (the directory served at /.well-known/acme-challenge/ is <webroot>/.well-known/acme-challenge/)", where, ChallengeHTTP01, ModeWebrootPush)
			}
			only([]string{"address"}, "mode "+ModeStandalone)
		case ModeStandalone:
			if ch.Address == "" && set["address"] == nil {
				ch.Address = DefaultStandaloneAddr
			}
			only([]string{"webroot"}, "mode "+ModeWebrootPush)
		}
	}
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

// profile reads a certificate profile name; which exist is the CA's
// directory's to say, checked before ordering.
func (p *parser) profile(n *yaml.Node, key string) string {
	v, ok := p.NonEmpty(n, key)
	if !ok {
		return ""
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			p.Errorf(yamlconf.Deref(n), "%s: bad profile name %q (a name the CA's directory lists, e.g. classic, tlsserver, shortlived)", key, v)
			return ""
		}
	}
	return v
}

// parseUntil reads persist_until: an RFC 3339 time, or a date (midnight
// UTC).
func parseUntil(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want 2027-06-30 or 2027-06-30T00:00:00Z", v)
}
