// Package acme obtains certificates from an ACME CA with the lego library:
// DNS-01 through any of lego's DNS providers (chosen by name), HTTP-01 by
// pushing the token file to the web hosts' webroots (webroot-push) or by a
// challenge server that the web servers forward to (standalone),
// dns-persist-01 with records set once (persist.go), certificate profiles
// checked against the CA's directory (profile.go), ACME Renewal
// Information (ARI) for deciding when to renew, kept until the CA's
// Retry-After (aristate.go), and revocation.
//
// The ACME account is registered once and kept under the state directory;
// every later Client with the same state reuses it.
//
// lego keeps some settings process-wide (its logger and the resolvers used
// to check DNS propagation), so Obtain calls run one at a time within a
// process.
package acme

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	"github.com/go-acme/lego/v5/challenge/dns01"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/lego"
)

// Challenge types and HTTP-01 modes.
const (
	DNS01  = "dns-01"
	HTTP01 = "http-01"

	ModeWebrootPush = "webroot-push"
	ModeStandalone  = "standalone"
)

// Key types of a certificate's private key.
const (
	KeyEC256   = "ec256"
	KeyEC384   = "ec384"
	KeyRSA2048 = "rsa2048"
	KeyRSA4096 = "rsa4096"
)

// DefaultKeyType is used when Request.KeyType is empty.
const DefaultKeyType = KeyEC256

// Errors checked with errors.Is.
var (
	// ErrConfig is a configuration or request that cannot work.
	ErrConfig = errors.New("invalid acme configuration")
	// ErrNoARI is returned by RenewalInfo when the CA offers no renewal
	// information.
	ErrNoARI = errors.New("acme server offers no renewal information (ARI)")
)

// Config is the ACME CA and account.
type Config struct {
	// Directory is the CA's ACME directory URL.
	Directory string
	// Email is the account's contact; may be empty.
	Email string
	// CARoots, when set, are the only roots trusted for the CA's HTTPS
	// (e.g. a private CA); nil trusts the system roots.
	CARoots *x509.CertPool
	// EAB is the external account binding the CA may require.
	EAB *EAB
	// StateDir holds the account, under
	// <StateDir>/acme/<directory host and path>/<email>/: account.key (the
	// account's private key, 0600) and account.json (its registration).
	StateDir string
	// UserAgent (e.g. "certpush/1.0") goes before lego's own in requests to
	// the CA.
	UserAgent string
	// Logger receives this package's and lego's log lines; nil discards
	// them.
	Logger *slog.Logger
	// HTTPTimeout bounds each request to the CA; 0 means 30 s.
	HTTPTimeout time.Duration
}

// EAB is an external account binding (RFC 8555 section 7.3.4): the key
// identifier and the base64url-encoded HMAC key the CA handed out.
type EAB struct {
	KID     string
	HMACKey string
}

// Request is one certificate to obtain.
type Request struct {
	// Name is the lineage's name, for logs.
	Name string
	// Domains to cover; the first becomes the subject's common name.
	// Wildcards ("*.example.com") need DNS-01.
	Domains []string
	// KeyType of the new private key: ec256 (default), ec384, rsa2048,
	// rsa4096.
	KeyType string
	// PreferredChain selects an alternate chain by the common name of its
	// top certificate's issuer; empty takes the CA's default chain.
	PreferredChain string
	// Challenge is how the CA validates control of the domains.
	Challenge Challenge
	// Profile is the CA's certificate profile to order (e.g. "classic",
	// "tlsserver", "shortlived"); empty takes the CA's default. Obtain
	// refuses one the directory does not advertise, before any order.
	Profile string
	// ReplacesCert is the certificate this one renews. When the CA offers
	// ARI it is sent as the order's "replaces" (RFC 9773 section 5).
	ReplacesCert *x509.Certificate
}

// Challenge is how domain control is proven.
type Challenge struct {
	// Type is "dns-01", "http-01" or "dns-persist-01".
	Type string

	// Wildcard (dns-persist-01) puts policy=wildcard in the records, as
	// wildcard names need; PersistUntil, when set, their persistUntil;
	// IssuerDomainName picks one of the CA's issuer domain names (its
	// directory's caaIdentities; empty: the first).
	Wildcard         bool
	PersistUntil     time.Time
	IssuerDomainName string
	// Records, when set (dns-persist-01), receives the records to create
	// before they are checked, so that they can be shown.
	Records func([]PersistRecord)

	// Provider names a lego DNS provider (dns-01), e.g. "cloudflare",
	// "route53", "rfc2136", or "exec" for a program of one's own. Each
	// reads its credentials from its environment variables (or their
	// *_FILE variants), as lego documents.
	Provider string
	// Resolvers ("host:port" or "host"), when given, must all see the TXT
	// records before the CA is told to look; they also find the zone's
	// authoritative servers, which must see them too unless
	// DisablePropagationCheck is set. Empty: the system's resolvers find
	// the authoritative servers.
	Resolvers []string
	// PropagationTimeout overrides the provider's wait for the records to
	// be visible; 0 keeps the provider's own.
	PropagationTimeout time.Duration
	// DisablePropagationCheck skips the check on the zone's authoritative
	// name servers (lego's DisableAuthoritativeNssPropagationRequirement,
	// its CLI's --dns.disable-cp): only Resolvers are asked, for
	// split-horizon DNS or authoritative servers that cannot be reached
	// from here. Without Resolvers nothing is checked.
	DisablePropagationCheck bool

	// Mode is the http-01 mode: "webroot-push" or "standalone".
	Mode string
	// Address is the standalone challenge server's listen address
	// (host:port, ":port"). It runs only while a challenge is open. The web
	// servers (or the load balancer) forward the challenge path to it and
	// keep the Host header, which it checks; for nginx, in the port 80
	// server block:
	//
	//	location /.well-known/acme-challenge/ {
	//		proxy_pass http://MANAGEMENT-HOST:8402;
	//		proxy_set_header Host $host;
	//	}
	Address string
	// Publisher puts token files on the web hosts (webroot-push).
	Publisher Publisher
}

// Certificate is an issued certificate with its new private key, all PEM.
type Certificate struct {
	// Cert is the leaf alone.
	Cert []byte
	// Chain is the intermediates that follow the leaf, in order.
	Chain []byte
	// Key is the private key of Cert. Never log it.
	Key []byte
	// Profile is the profile it was ordered with ("" for the CA's
	// default).
	Profile string
}

// Fullchain returns the leaf followed by the chain.
func (c *Certificate) Fullchain() []byte {
	out := append([]byte{}, c.Cert...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, c.Chain...)
}

// Client obtains certificates for one ACME account.
type Client struct {
	cfg  Config
	log  *slog.Logger
	acct *account
	base http.RoundTripper
}

// obtainMu serializes the use of lego, whose DNS resolver settings are
// process-wide.
var obtainMu sync.Mutex

// New loads the account stored for cfg.Directory and cfg.Email under
// cfg.StateDir, or registers a new one with the CA (agreeing to its terms
// of service) and stores it. A stored account is used without asking the
// CA.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Directory == "" {
		return nil, fmt.Errorf("%w: no directory URL", ErrConfig)
	}
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: no state directory", ErrConfig)
	}
	if cfg.EAB != nil && (cfg.EAB.KID == "" || cfg.EAB.HMACKey == "") {
		return nil, fmt.Errorf("%w: external account binding needs a key id and an HMAC key", ErrConfig)
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = 30 * time.Second
	}
	c := &Client{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.base = &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   cfg.HTTPTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout:   cfg.HTTPTimeout,
		ResponseHeaderTimeout: cfg.HTTPTimeout,
		TLSClientConfig:       &tls.Config{RootCAs: cfg.CARoots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	acct, err := c.loadOrRegister(ctx)
	if err != nil {
		return nil, err
	}
	c.acct = acct
	return c, nil
}

// legoClient makes a lego client whose requests to the CA end with ctx.
func (c *Client) legoClient(ctx context.Context, acct *account) (*lego.Client, error) {
	lc := lego.NewConfig(acct)
	lc.CADirURL = c.cfg.Directory
	lc.UserAgent = c.cfg.UserAgent
	lc.HTTPClient = &http.Client{
		Transport: ctxTransport{ctx: ctx, base: c.base},
		Timeout:   2 * c.cfg.HTTPTimeout,
	}
	setLegoLogger(c.log)
	cl, err := lego.NewClient(lc)
	if err != nil {
		return nil, fmt.Errorf("acme directory %s: %w", c.cfg.Directory, err)
	}
	return cl, nil
}

// ctxTransport ends every request when ctx ends, also those lego makes
// without a context of its own (the directory, in lego.NewClient).
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.ctx.Err(); err != nil {
		return nil, err
	}
	return t.base.RoundTrip(r.WithContext(t.ctx))
}

func keyType(s string) (certcrypto.KeyType, error) {
	switch strings.ToLower(s) {
	case "", KeyEC256:
		return certcrypto.EC256, nil
	case KeyEC384:
		return certcrypto.EC384, nil
	case KeyRSA2048:
		return certcrypto.RSA2048, nil
	case KeyRSA4096:
		return certcrypto.RSA4096, nil
	}
	return "", fmt.Errorf("%w: key type %q (want ec256, ec384, rsa2048 or rsa4096)", ErrConfig, s)
}

// Obtain orders a certificate for req.Domains, proves control with
// req.Challenge, and returns the certificate with its new private key.
// Nothing is stored. When ctx ends, the requests to the CA stop and Obtain
// returns soon after.
func (c *Client) Obtain(ctx context.Context, req Request) (*Certificate, error) {
	if err := CheckRequest(req); err != nil {
		return nil, err
	}
	kt, err := keyType(req.KeyType)
	if err != nil {
		return nil, err
	}
	name := req.Name
	if name == "" {
		name = req.Domains[0]
	}

	obtainMu.Lock()
	defer obtainMu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	cl, err := c.legoClient(ctx, c.acct)
	if err != nil {
		return nil, err
	}
	meta := cl.GetServerMetadata()
	if err := checkProfile(req.Profile, meta.Profiles); err != nil {
		return nil, err
	}
	if req.Challenge.Type == DNSPersist01 {
		if err := c.checkPersist(ctx, req, meta.CaaIdentities); err != nil {
			return nil, err
		}
	}
	if err := c.setChallenge(ctx, cl, req); err != nil {
		return nil, err
	}

	or := certificate.ObtainRequest{
		Domains:        req.Domains,
		KeyType:        kt,
		Bundle:         false,
		PreferredChain: req.PreferredChain,
		Profile:        req.Profile,
		// The first name as subject common name, as before lego v5
		// turned it off by default.
		EnableCommonName: true,
	}
	if req.ReplacesCert != nil {
		// "replaces" only goes to a CA that offers ARI: its directory
		// says so (asking for renewal information here would be a
		// request before the stored Retry-After).
		if c.offersARI(ctx) {
			id, err := api.MakeARICertID(req.ReplacesCert)
			if err != nil {
				return nil, fmt.Errorf("certificate id for replaces: %w", err)
			}
			or.ReplacesCertID = id
		}
	}

	start := time.Now()
	c.log.Info("acme order", "cert", name, "domains", req.Domains, "challenge", req.Challenge.Type, "key_type", strings.ToLower(orDefault(req.KeyType, DefaultKeyType)), "profile", req.Profile, "replaces", or.ReplacesCertID)
	res, err := cl.Certificate.Obtain(ctx, or)
	if err != nil && or.ReplacesCertID != "" && strings.Contains(err.Error(), "alreadyReplaced") && ctx.Err() == nil {
		// An earlier renewal got its certificate but did not keep it:
		// the old one is replaced already; order without replaces.
		c.log.Warn("certificate already replaced at the CA; ordering without replaces", "cert", name)
		or.ReplacesCertID = ""
		res, err = cl.Certificate.Obtain(ctx, or)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, fmt.Errorf("obtain %s: %w (%v)", name, cerr, err)
		}
		return nil, fmt.Errorf("obtain %s: %w", name, err)
	}
	c.log.Info("acme certificate issued", "cert", name, "url", res.CertURL, "took", time.Since(start).Round(time.Millisecond))
	return &Certificate{Cert: res.Certificate, Chain: res.IssuerCertificate, Key: res.PrivateKey, Profile: req.Profile}, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// CheckRequest reports (as ErrConfig) a request that cannot work, without
// contacting the CA or the DNS provider.
func CheckRequest(req Request) error {
	if len(req.Domains) == 0 {
		return fmt.Errorf("%w: no domains", ErrConfig)
	}
	if _, err := keyType(req.KeyType); err != nil {
		return err
	}
	ch := req.Challenge
	switch ch.Type {
	case DNS01:
		if ch.Provider == "" {
			return fmt.Errorf("%w: dns-01 needs a provider name", ErrConfig)
		}
		if ch.PropagationTimeout < 0 {
			return fmt.Errorf("%w: negative propagation timeout", ErrConfig)
		}
	case DNSPersist01:
		for _, d := range req.Domains {
			if strings.HasPrefix(d, "*.") && !ch.Wildcard {
				return fmt.Errorf("%w: wildcard name %s needs dns-persist-01 with wildcard: true (policy=wildcard in the record)", ErrConfig, d)
			}
		}
		if ch.PropagationTimeout < 0 {
			return fmt.Errorf("%w: negative propagation timeout", ErrConfig)
		}
	case HTTP01:
		for _, d := range req.Domains {
			if strings.HasPrefix(d, "*.") {
				return fmt.Errorf("%w: wildcard name %s needs dns-01", ErrConfig, d)
			}
		}
		switch ch.Mode {
		case ModeWebrootPush:
			if ch.Publisher == nil {
				return fmt.Errorf("%w: http-01 webroot-push needs a publisher", ErrConfig)
			}
		case ModeStandalone:
			if _, _, err := net.SplitHostPort(ch.Address); err != nil {
				return fmt.Errorf("%w: http-01 standalone address %q: %v", ErrConfig, ch.Address, err)
			}
		default:
			return fmt.Errorf("%w: http-01 mode %q (want webroot-push or standalone)", ErrConfig, ch.Mode)
		}
	default:
		return fmt.Errorf("%w: challenge type %q (want dns-01, http-01 or dns-persist-01)", ErrConfig, ch.Type)
	}
	return nil
}

// setChallenge configures lego's solver for req, checked by CheckRequest.
func (c *Client) setChallenge(ctx context.Context, cl *lego.Client, req Request) error {
	ch := req.Challenge
	if ch.Type == DNSPersist01 {
		return c.setPersist(ctx, cl, req)
	}
	if ch.Type == DNS01 {
		p, err := dnsProvider(ch.Provider)
		if err != nil {
			return err
		}
		p = withTimeout(p, ch.PropagationTimeout)
		// lego's resolvers are process-wide; a new client also forgets
		// the zones found for an earlier Obtain.
		dopts := dns01.NewOptions()
		dopts.RecursiveNameservers = resolvers(ch.Resolvers)
		dns01.SetDefaultClient(dns01.NewClient(dopts))
		opts := []dns01.ChallengeOption{
			// Given resolvers must see the records too; without them only
			// the authoritative servers are checked.
			dns01.CondOptions(len(ch.Resolvers) == 0, dns01.DisableRecursiveNSsPropagationRequirement()),
			dns01.CondOptions(ch.DisablePropagationCheck, dns01.DisableAuthoritativeNssPropagationRequirement()),
			dns01.WrapPreCheck(func(pctx context.Context, domain, fqdn, value string, check dns01.PreCheckFunc) (bool, error) {
				if err := ctx.Err(); err != nil {
					return true, err // stops lego's wait
				}
				return check(pctx, fqdn, value)
			}),
		}
		if err := cl.Challenge.SetDNS01Provider(p, opts...); err != nil {
			return fmt.Errorf("dns-01 provider %s: %w", ch.Provider, err)
		}
		return nil
	}
	var p challenge.Provider
	if ch.Mode == ModeWebrootPush {
		p = &publisherProvider{pub: ch.Publisher, log: c.log}
	} else {
		host, port, _ := net.SplitHostPort(ch.Address)
		p = http01.NewProviderServer(host, port)
	}
	if err := cl.Challenge.SetHTTP01Provider(p); err != nil {
		return fmt.Errorf("http-01: %w", err)
	}
	return nil
}

// account is the ACME account, as lego's registration.User.
func (a *account) GetPrivateKey() crypto.Signer { return a.key }

// offersARI reports whether the CA's directory has a renewalInfo URL.
func (c *Client) offersARI(ctx context.Context) bool {
	hc := &http.Client{Transport: ctxTransport{ctx: ctx, base: c.base}, Timeout: 2 * c.cfg.HTTPTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Directory, nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", strings.TrimSpace(c.cfg.UserAgent+" certpush-acme"))
	resp, err := hc.Do(req)
	if err != nil {
		c.log.Warn("directory unreadable; ordering without replaces", "error", err)
		return false
	}
	defer resp.Body.Close()
	var dir struct {
		RenewalInfo string `json:"renewalInfo"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&dir) != nil {
		return false
	}
	return dir.RenewalInfo != ""
}
