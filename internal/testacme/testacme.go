// Package testacme runs a local ACME CA for tests and demos: pebble and
// pebble-challtestsrv (v2.10.3 as scripts/deps.sh builds it, else Debian's
// package pebble) on loopback, each on free
// ports, in a directory of their own. challtestsrv is pebble's DNS server,
// so DNS-01 records set through its management API are what pebble sees,
// and every name resolves to 127.0.0.1 for HTTP-01.
//
// Nothing here depends on package testing: tests and `make demo` both use
// it.
package testacme

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/certpush/certpush/internal/testproc"
)

// The two programs: pebble v2.10 as scripts/deps.sh builds it with go
// install (into $GOBIN or the first $GOPATH's bin, default ~/go/bin), else
// Debian's package pebble (2.4, without profiles, ARI or dns-persist-01).
var (
	DefaultPebble       = findProgram("pebble")
	DefaultChallTestSrv = findProgram("pebble-challtestsrv")
)

const (
	defaultStartTimeout  = 20 * time.Second
	readinessPollingTime = 50 * time.Millisecond
)

// ErrMissing is returned by Start and Available when pebble or
// pebble-challtestsrv is not installed.
var ErrMissing = errors.New("pebble not installed")

// Options configure Start. The zero value is usable.
type Options struct {
	// Dir holds the configuration, the listener certificate and the logs.
	// Empty: a new temporary directory, removed by Close. A given Dir is
	// left in place.
	Dir string
	// HTTPPort is the port pebble connects to for HTTP-01 validation (every
	// name resolves to 127.0.0.1). 0: a free port, with nothing on it.
	HTTPPort int
	// CertificateValidity is the lifetime of issued certificates; 0 keeps
	// pebble's default (about five years). Whole seconds.
	CertificateValidity time.Duration
	// Pebble and ChallTestSrv are the programs; empty means DefaultPebble
	// and DefaultChallTestSrv.
	Pebble, ChallTestSrv string
	// StartTimeout bounds the wait for both to answer; 0 means 20 s.
	StartTimeout time.Duration

	// Profiles are the certificate profiles pebble offers (pebble 2.10);
	// nil offers pebble's "default" profile only (with
	// CertificateValidity). An order without a profile gets one of them
	// at random.
	Profiles map[string]Profile
	// EABKeys are external account binding keys (key id -> base64url
	// HMAC key) pebble accepts; EABRequired makes pebble refuse accounts
	// without a binding.
	EABKeys     map[string]string
	EABRequired bool
	// AlternateRoots is the number of alternate chains (each to its own
	// root) pebble offers besides its default (PEBBLE_ALTERNATE_ROOTS).
	AlternateRoots int
	// CAAIdentities are the issuer domain names pebble offers in
	// dns-persist-01 challenges and its directory; nil: pebble's own
	// default, pebble.letsencrypt.org.
	CAAIdentities []string
}

// Profile is one certificate profile of pebble's configuration.
type Profile struct {
	Description string
	// Validity is the lifetime of the certificates; whole seconds.
	Validity time.Duration
}

// Server is a running pebble with its DNS server.
type Server struct {
	// Dir is where the files and the logs (pebble.log, challtestsrv.log) are.
	Dir string
	// DirectoryURL is the ACME directory, over HTTPS.
	DirectoryURL string
	// ListenerCA is the PEM certificate of the CA that signed pebble's HTTPS
	// listener; ListenerPool holds it. Trust it to talk to DirectoryURL.
	ListenerCA   []byte
	ListenerPool *x509.CertPool
	// ListenerCAFile is ListenerCA on disk (for REQUESTS_CA_BUNDLE and
	// LEGO_CA_CERTIFICATES).
	ListenerCAFile string
	// Root and Intermediate are pebble's issuing chain in PEM (new at every
	// start); issued chains verify to Root. RootPool holds Root.
	Root, Intermediate []byte
	RootPool           *x509.CertPool
	// PebbleManagementURL is pebble's own management API (HTTPS, same CA).
	PebbleManagementURL string
	// DNSAddr is challtestsrv's DNS server (host:port, UDP and TCP).
	DNSAddr string
	// ManagementURL is challtestsrv's management API (plain HTTP).
	ManagementURL string
	// HTTPPort is the port pebble uses for HTTP-01.
	HTTPPort int

	ownDir  bool
	pebble  *testproc.Proc
	chall   *testproc.Proc
	httpc   *http.Client
	mgmtCli *http.Client
}

// Available reports ErrMissing when a program is not installed.
func Available(opts Options) error {
	for _, p := range []string{orDefault(opts.Pebble, DefaultPebble), orDefault(opts.ChallTestSrv, DefaultChallTestSrv)} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: %s", ErrMissing, p)
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Start starts challtestsrv, then pebble, waits until both answer and
// fetches pebble's root and intermediate. On error everything started is
// stopped again.
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if err := Available(opts); err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	s := &Server{Dir: opts.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "testacme-"); err != nil {
			return nil, fmt.Errorf("make dir: %w", err)
		}
		s.ownDir = true
	} else if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("make dir: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return nil, err
	}

	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	acmePort, pebbleMgmt, tlsPort, dnsPort, challMgmt := ports[0], ports[1], ports[2], ports[3], ports[4]
	s.HTTPPort = opts.HTTPPort
	if s.HTTPPort == 0 {
		p, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		s.HTTPPort = p[0]
	}
	s.DNSAddr = "127.0.0.1:" + strconv.Itoa(dnsPort)
	s.ManagementURL = "http://127.0.0.1:" + strconv.Itoa(challMgmt)
	s.DirectoryURL = "https://127.0.0.1:" + strconv.Itoa(acmePort) + "/dir"
	s.PebbleManagementURL = "https://127.0.0.1:" + strconv.Itoa(pebbleMgmt)

	// The listener certificate pebble serves its API with.
	caPEM, certPEM, keyPEM, err := listenerCert()
	if err != nil {
		return nil, fmt.Errorf("listener certificate: %w", err)
	}
	s.ListenerCA = caPEM
	s.ListenerPool = x509.NewCertPool()
	s.ListenerPool.AppendCertsFromPEM(caPEM)
	s.ListenerCAFile = filepath.Join(s.Dir, "listener-ca.pem")
	certFile := filepath.Join(s.Dir, "listener.pem")
	keyFile := filepath.Join(s.Dir, "listener.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{s.ListenerCAFile, caPEM}, {certFile, certPEM}, {keyFile, keyPEM}} {
		if err := writeFile(f.path, f.data); err != nil {
			return nil, err
		}
	}

	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(acmePort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(pebbleMgmt),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       s.HTTPPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}}
	pc := cfg["pebble"].(map[string]any)
	if opts.CertificateValidity > 0 {
		// Pebble 2.4 reads the first, 2.10 only a profile's.
		pc["certificateValidityPeriod"] = uint64(opts.CertificateValidity / time.Second)
		if opts.Profiles == nil {
			pc["profiles"] = map[string]any{"default": map[string]any{
				"description": "the harness's default", "validityPeriod": uint64(opts.CertificateValidity / time.Second),
			}}
		}
	}
	if opts.Profiles != nil {
		profs := map[string]any{}
		for name, p := range opts.Profiles {
			profs[name] = map[string]any{"description": p.Description, "validityPeriod": uint64(p.Validity / time.Second)}
		}
		pc["profiles"] = profs
	}
	if len(opts.EABKeys) > 0 {
		pc["externalAccountMACKeys"] = opts.EABKeys
	}
	pc["externalAccountBindingRequired"] = opts.EABRequired
	if len(opts.CAAIdentities) > 0 {
		pc["caaIdentities"] = opts.CAAIdentities
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(s.Dir, "pebble.json")
	if err := writeFile(cfgFile, cfgJSON); err != nil {
		return nil, err
	}

	s.httpc = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ListenerPool}},
	}
	s.mgmtCli = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}

	challArgs := []string{orDefault(opts.ChallTestSrv, DefaultChallTestSrv)}
	if newChallTestSrv(challArgs[0]) {
		// challtestsrv 1.4 (pebble 2.10) renamed -dns01 and serves DoH.
		challArgs = append(challArgs, "-dnsserver", s.DNSAddr, "-doh", "")
	} else {
		challArgs = append(challArgs, "-dns01", s.DNSAddr)
	}
	challArgs = append(challArgs,
		"-management", "127.0.0.1:"+strconv.Itoa(challMgmt),
		"-http01", "", "-https01", "", "-tlsalpn01", "",
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
	)
	s.chall, err = testproc.Start("pebble-challtestsrv", challArgs, filepath.Join(s.Dir, "challtestsrv.log"), testproc.Options{})
	if err != nil {
		return nil, err
	}
	if err := s.waitChallTestSrv(ctx); err != nil {
		return nil, err
	}

	s.pebble, err = testproc.Start("pebble", []string{
		orDefault(opts.Pebble, DefaultPebble),
		"-config", cfgFile,
		"-dnsserver", s.DNSAddr,
	}, filepath.Join(s.Dir, "pebble.log"), testproc.Options{
		Env: []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0", "PEBBLE_ALTERNATE_ROOTS=" + strconv.Itoa(opts.AlternateRoots)},
	})
	if err != nil {
		return nil, err
	}
	if err := s.poll(ctx, s.pebble, func() error {
		_, err := s.get(ctx, s.DirectoryURL)
		return err
	}); err != nil {
		return nil, fmt.Errorf("pebble not ready: %w", err)
	}

	if s.Root, err = s.get(ctx, s.PebbleManagementURL+"/roots/0"); err != nil {
		return nil, fmt.Errorf("fetch pebble root: %w", err)
	}
	if s.Intermediate, err = s.get(ctx, s.PebbleManagementURL+"/intermediates/0"); err != nil {
		return nil, fmt.Errorf("fetch pebble intermediate: %w", err)
	}
	s.RootPool = x509.NewCertPool()
	if !s.RootPool.AppendCertsFromPEM(s.Root) {
		return nil, errors.New("pebble root: no certificate in response")
	}
	return s, nil
}

// waitChallTestSrv polls the management API, then a DNS query.
func (s *Server) waitChallTestSrv(ctx context.Context) error {
	r := s.Resolver()
	return s.poll(ctx, s.chall, func() error {
		resp, err := s.mgmtCli.Get(s.ManagementURL + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err = r.LookupHost(qctx, "ready.test")
		return err
	})
}

// poll calls ready until it succeeds, p exits, or ctx ends.
func (s *Server) poll(ctx context.Context, p *testproc.Proc, ready func() error) error {
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited: %v: %s", p.Name(), p.Err(), testproc.Tail(p.Log(), 2000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v): %s", ctx.Err(), err, testproc.Tail(p.Log(), 2000))
		case <-time.After(readinessPollingTime):
		}
	}
}

// get fetches url from pebble (HTTPS, listener CA) and returns the body of a
// 200 response.
func (s *Server) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

// HTTPClient returns a client that trusts pebble's listener.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ListenerPool}},
	}
}

// Resolver returns a resolver that asks challtestsrv.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, s.DNSAddr)
		},
	}
}

// SetTXT adds value to the TXT records of host (a fully qualified name,
// e.g. "_acme-challenge.example.test."). Values accumulate.
func (s *Server) SetTXT(ctx context.Context, host, value string) error {
	return s.manage(ctx, "/set-txt", map[string]any{"host": fqdn(host), "value": value})
}

// ClearTXT removes every TXT record of host.
func (s *Server) ClearTXT(ctx context.Context, host string) error {
	return s.manage(ctx, "/clear-txt", map[string]any{"host": fqdn(host)})
}

// AddA makes host resolve to addrs (IPv4) instead of the default 127.0.0.1.
func (s *Server) AddA(ctx context.Context, host string, addrs ...string) error {
	return s.manage(ctx, "/add-a", map[string]any{"host": fqdn(host), "addresses": addrs})
}

func fqdn(h string) string {
	if h == "" || h[len(h)-1] == '.' {
		return h
	}
	return h + "."
}

func (s *Server) manage(ctx context.Context, path string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ManagementURL+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.mgmtCli.Do(req)
	if err != nil {
		return fmt.Errorf("challtestsrv %s: %w", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv %s: %s", path, resp.Status)
	}
	return nil
}

// Close stops pebble and challtestsrv and removes the directory when Start
// made it.
func (s *Server) Close() error {
	var errs []error
	for _, p := range []*testproc.Proc{s.pebble, s.chall} {
		if p != nil {
			errs = append(errs, p.Stop())
		}
	}
	if s.ownDir && s.Dir != "" {
		errs = append(errs, os.RemoveAll(s.Dir))
	}
	return errors.Join(errs...)
}

// writeFile creates a file readable by its owner only.
func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freePorts returns n distinct loopback ports that are free for both TCP
// and UDP right now.
func freePorts(n int) ([]int, error) {
	var (
		ports []int
		held  []io.Closer
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 100; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, errors.New("free port: none found")
	}
	return ports, nil
}

// pemBlock encodes one PEM block.
func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
