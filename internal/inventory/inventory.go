// Package inventory reads certpush's management configuration (YAML) and
// host-list files, and resolves which hosts receive which certificate.
//
// Every problem found while loading names the file and line it comes from
// (as an *Error); all problems are reported at once, joined with
// errors.Join.
package inventory

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/verify"
	"github.com/certpush/certpush/internal/yamlconf"
)

// Install modes of a certificate: run certnode over the push connection,
// or leave the bundle for the node's timer.
const (
	InstallNow  = "now"
	InstallCron = "cron"
)

// Challenge types and HTTP-01 modes.
const (
	ChallengeDNS01  = "dns-01"
	ChallengeHTTP01 = "http-01"
	// ChallengeDNSPersist01 validates with one TXT record per name set
	// once (_validation-persist.<name>), naming the ACME account.
	ChallengeDNSPersist01 = "dns-persist-01"

	ModeWebrootPush = "webroot-push"
	ModeStandalone  = "standalone"
)

// Defaults applied to whatever the configuration leaves unset.
const (
	DefaultStateDir       = "/var/lib/certpush"
	DefaultUser           = "certsync"
	DefaultPort           = 22
	DefaultParallel       = 32
	DefaultTimeout        = 60 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultIncoming       = "/certsync/live"
	DefaultCommand        = "certnode"
	DefaultDirectory      = "https://acme-v02.api.letsencrypt.org/directory"
	DefaultKeyType        = "ec256"
	DefaultStandaloneAddr = ":80"
)

// KeyTypes lists the accepted values of key_type.
var KeyTypes = []string{"ec256", "ec384", "rsa2048", "rsa4096"}

// ErrUnknownCert is returned (wrapped) by Config.Cert and Config.HostsFor
// for a name that is not configured.
var ErrUnknownCert = errors.New("unknown certificate")

// Error is one problem in a configuration or host-list file: the one
// config error type, shared with certnode's configuration.
type Error = yamlconf.Error

// Config is a parsed and validated management configuration. Relative
// paths in the file are resolved against the file's directory.
type Config struct {
	Path     string // the file it was read from
	StateDir string
	SSH      SSH
	ACME     ACME
	// Roots are the roots every certificate's chain must verify to, unless
	// the certificate sets its own; nil means the system's roots.
	Roots     *x509.CertPool
	Certs     map[string]*Cert
	Hosts     map[string]*Host // resolved: defaults from SSH applied
	CertOrder []string         // certificate names in file order
	// Store is where publish puts the bundles (pull mode); nil when not
	// configured.
	Store *store.Config
}

// SSH holds the push connection settings and per-host defaults.
type SSH struct {
	User           string
	Port           int
	Identity       string // private key file; "" means use the ssh-agent
	KnownHosts     string
	Parallel       int
	Timeout        time.Duration // per host, for the whole job
	ConnectTimeout time.Duration
	Incoming       string // remote directory where bundles land
	Command        string // remote certnode command, run by the remote shell
}

// ACME holds the ACME account and client settings.
type ACME struct {
	Directory          string
	Email              string
	CAFile             string // extra PEM roots for the ACME server only
	EAB                *EAB
	KeyType            string
	PreferredChain     string
	DNSResolvers       []string // host:port
	PropagationTimeout time.Duration
	// DisablePropagationCheck skips the DNS-01 check on the zone's
	// authoritative name servers: only DNSResolvers (or a challenge's
	// resolvers) are asked (acme.Challenge.DisablePropagationCheck).
	DisablePropagationCheck bool
	// Profile is the default certificate profile ("" : the CA's default).
	Profile string
}

// EAB is an external account binding.
type EAB struct {
	KID     string
	HMACKey string
}

// Cert is one certificate lineage and where it goes.
type Cert struct {
	Name      string
	Domains   []string
	Hosts     []string // host and group names, as written
	HostsFile string   // resolved path, "" if none; read by Load and Parse
	Install   string   // InstallNow or InstallCron
	Canary    []string
	// Waves are the rollout's steps as written: host and group names, and
	// WaveRest; nil when the certificate has none (see Config.Waves).
	Waves [][]string
	// Pause is the wait after each wave but the last, during which the
	// finished waves' endpoints keep being checked.
	Pause          time.Duration
	VerifySNI      string
	VerifyPorts    []int
	RenewBefore    time.Duration // 0: decided by the renewal logic
	KeyType        string        // "" means ACME.KeyType
	PreferredChain string
	Profile        string // "" means ACME.Profile
	Challenge      *Challenge
	// Anchor is what the certificate's chain must verify to (roots: of
	// the certificate, else of the file, else the system's) and whether a
	// self-signed certificate is accepted.
	Anchor bundle.Anchor

	// listed holds the hosts read from HostsFile, merged with the
	// configured hosts of the same name.
	listed []listedHost
}

// Challenge says how ACME validates the certificate's domains.
type Challenge struct {
	Type               string // ChallengeDNS01 or ChallengeHTTP01
	Provider           string // dns-01: lego DNS provider name, or "exec"
	Mode               string // http-01: ModeWebrootPush or ModeStandalone
	Webroot            string // http-01 webroot-push: directory on every host
	Address            string // http-01 standalone: listen address
	Resolvers          []string
	PropagationTimeout time.Duration
	// dns-persist-01: policy=wildcard in the records, their persistUntil
	// (zero: none), and the CA's issuer domain name to name ("": the
	// first the CA's directory lists).
	Wildcard         bool
	PersistUntil     time.Time
	IssuerDomainName string
}

// Host is one SSH destination. Hosts returned by this package have every
// field that has a default filled in.
type Host struct {
	Name     string
	Address  string
	Port     int
	User     string
	Groups   []string
	Verify   []string // TLS endpoints, host:port
	Incoming string
	Command  string
	// Install overrides the certificate's install mode on this host
	// (InstallNow or InstallCron; "" = the certificate's), so one
	// certificate can serve forced-command nodes and SFTP-only nodes.
	Install string
	// Webroot overrides a certificate's http-01 challenge.webroot on this
	// host ("" = the certificate's).
	Webroot string
	// Type is TypeSSH ("") or TypeExec: a target that is not an SSH
	// host but a command certpush runs (see exec.go).
	Type string
	// Exec is an exec target's command (argv, no shell); the verb
	// (current or deploy) is appended.
	Exec []string
	// ExecTimeout bounds each run of Exec (0: the ssh.timeout).
	ExecTimeout time.Duration
}

// SSHAddress returns the host's address and port in the form net.Dial takes.
func (h Host) SSHAddress() string {
	return net.JoinHostPort(h.Address, strconv.Itoa(h.Port))
}

// SNI returns the server name to use when checking the certificate over
// TLS: verify_sni, or one derived from the domains.
func (c *Cert) SNI() string {
	if c.VerifySNI != "" {
		return c.VerifySNI
	}
	return verify.DefaultSNI(c.Domains)
}

// Names returns the configured certificate names in file order (sorted
// when the order is not known).
func (c *Config) Names() []string {
	if len(c.CertOrder) == len(c.Certs) {
		return slices.Clone(c.CertOrder)
	}
	names := make([]string, 0, len(c.Certs))
	for n := range c.Certs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Cert returns the certificate called name. The error wraps ErrUnknownCert
// and lists the configured names.
func (c *Config) Cert(name string) (*Cert, error) {
	if cert, ok := c.Certs[name]; ok {
		return cert, nil
	}
	names := c.Names()
	if len(names) == 0 {
		return nil, fmt.Errorf("%w %q: no certificates configured", ErrUnknownCert, name)
	}
	return nil, fmt.Errorf("%w %q (configured: %s)", ErrUnknownCert, name, strings.Join(names, ", "))
}

// HostsFor returns the hosts that receive the certificate called cert, in
// a deterministic order: the cert's hosts entries in order (a group
// expands to its members sorted by name), then the hosts_file entries in
// file order, without duplicates; then the canary hosts are moved to the
// front, in canary order, or, with waves:, the hosts are put in wave
// order. Each host is fully resolved: SSH defaults
// applied, and Verify filled from the cert's verify_ports when the host
// has no endpoints of its own (and is not an exec target, which has no
// address). The result is a copy.
func (c *Config) HostsFor(cert string) ([]Host, error) {
	ct, err := c.Cert(cert)
	if err != nil {
		return nil, err
	}
	// resolve returns copies: fill them in place, with no second copy
	// of what may be 100,000 hosts.
	hosts := c.resolve(ct)
	for i := range hosts {
		h := &hosts[i]
		*h = c.withDefaults(*h)
		if len(h.Verify) == 0 && !h.IsExec() {
			for _, p := range ct.VerifyPorts {
				h.Verify = append(h.Verify, net.JoinHostPort(h.Address, strconv.Itoa(p)))
			}
		}
	}
	if len(ct.Waves) > 0 {
		// Wave order: the first wave's hosts first.
		var ordered []Host
		for _, w := range c.wavesOf(ct, hosts) {
			ordered = append(ordered, w.Hosts...)
		}
		hosts = ordered
	}
	return hosts, nil
}

// countUpTo is at most the number of hosts resolve lists for ct: its
// hosts and group members counted with repeats, and its listed hosts.
func (c *Config) countUpTo(ct *Cert, members map[string][]string) int {
	n := len(ct.listed)
	for _, ref := range ct.Hosts {
		if h, ok := c.Hosts[ref]; ok && h != nil {
			n++
		} else {
			n += len(members[ref])
		}
	}
	return n
}

// memberSet is the names of the hosts resolve lists for ct, without
// copying the hosts: the parser's checks need only the names.
func (c *Config) memberSet(ct *Cert) map[string]bool {
	set := map[string]bool{}
	for _, ref := range ct.Hosts {
		if h, ok := c.Hosts[ref]; ok && h != nil {
			set[ref] = true
		}
	}
	groups := map[string]bool{}
	for _, ref := range ct.Hosts {
		if h, ok := c.Hosts[ref]; !ok || h == nil {
			groups[ref] = true
		}
	}
	if len(groups) > 0 {
		for name, h := range c.Hosts {
			for _, g := range h.Groups {
				if groups[g] {
					set[name] = true
					break
				}
			}
		}
	}
	for i := range ct.listed {
		set[ct.listed[i].name()] = true
	}
	return set
}

// resolve lists the cert's hosts in delivery order (see HostsFor), as
// copies, without defaults applied.
func (c *Config) resolve(ct *Cert) []Host {
	members := map[string][]string{}
	for name, h := range c.Hosts {
		for _, g := range h.Groups {
			members[g] = append(members[g], name)
		}
	}
	// The hosts in first-seen order, and where each name is among them;
	// sized once (a host is about 240 bytes, and a fleet may have 100,000).
	hosts := make([]Host, 0, c.countUpTo(ct, members))
	at := make(map[string]int, cap(hosts))
	add := func(h *Host, replace bool) {
		i, ok := at[h.Name]
		switch {
		case !ok:
			at[h.Name] = len(hosts)
			hosts = append(hosts, copyHost(*h))
		case replace:
			hosts[i] = copyHost(*h)
		}
	}
	for _, ref := range ct.Hosts {
		if h, ok := c.Hosts[ref]; ok && h != nil {
			add(h, false)
			continue
		}
		names := slices.Clone(members[ref])
		sort.Strings(names)
		for _, n := range names {
			add(c.Hosts[n], false)
		}
	}
	// A listed host that is also configured carries the list's user and
	// port (merged at parse time), so it replaces the configured entry.
	for i := range ct.listed {
		h := ct.listed[i].host()
		add(&h, true)
	}

	// Canary hosts move to the front, in canary order; the rest keep
	// theirs.
	front := 0
	for _, n := range ct.Canary {
		i, ok := at[n]
		if !ok || i < front {
			continue // not a host of the cert, or named twice
		}
		h := hosts[i]
		copy(hosts[front+1:i+1], hosts[front:i])
		hosts[front] = h
		for j := front; j <= i; j++ {
			at[hosts[j].Name] = j
		}
		front++
	}
	return hosts
}

// withDefaults fills the host's unset fields from the SSH settings, or
// from the package defaults when those are unset too.
func (c *Config) withDefaults(h Host) Host {
	s := c.SSH
	if h.Port == 0 {
		h.Port = orDefault(s.Port, DefaultPort)
	}
	if h.User == "" {
		h.User = orDefault(s.User, DefaultUser)
	}
	if h.Incoming == "" {
		h.Incoming = orDefault(s.Incoming, DefaultIncoming)
	}
	if h.Command == "" {
		h.Command = orDefault(s.Command, DefaultCommand)
	}
	return h
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v != zero {
		return v
	}
	return def
}

func copyHost(h Host) Host {
	h.Groups = slices.Clone(h.Groups)
	h.Verify = slices.Clone(h.Verify)
	h.Exec = slices.Clone(h.Exec)
	return h
}

// Host returns the configured host name with the SSH defaults filled in.
func (c *Config) Host(name string) (Host, bool) {
	h, ok := c.Hosts[name]
	if !ok || h == nil {
		return Host{}, false
	}
	return c.withDefaults(copyHost(*h)), true
}
