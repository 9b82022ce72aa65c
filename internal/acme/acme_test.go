package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/acme/http01"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/certpush/certpush/internal/testproc"
)

// issuanceTimeout bounds one test's ACME work.
const issuanceTimeout = 30 * time.Second

func startPebble(t *testing.T, opts testacme.Options) *testacme.Server {
	t.Helper()
	if err := testacme.Available(opts); errors.Is(err, testacme.ErrMissing) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	srv, err := testacme.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

func newClient(t *testing.T, srv *testacme.Server, stateDir string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	c, err := New(ctx, Config{
		Directory: srv.DirectoryURL,
		Email:     "ops@example.test",
		CARoots:   srv.ListenerPool,
		StateDir:  stateDir,
		Logger:    testlog.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// useExecHook points lego's exec provider at the harness's script and
// keeps its waits short.
func useExecHook(t *testing.T, srv *testacme.Server) {
	script, err := srv.ExecScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("EXEC_PATH", script)
	t.Setenv("EXEC_MODE", "")
	t.Setenv("EXEC_SEQUENCE_INTERVAL", "0")
	t.Setenv("EXEC_POLLING_INTERVAL", "1")
	t.Setenv("EXEC_PROPAGATION_TIMEOUT", "10")
}

func dnsChallenge(srv *testacme.Server) Challenge {
	return Challenge{
		Type:                    DNS01,
		Provider:                "exec",
		Resolvers:               []string{srv.DNSAddr},
		DisablePropagationCheck: true,
		PropagationTimeout:      10 * time.Second,
	}
}

func obtain(t *testing.T, c *Client, req Request) *Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	start := time.Now()
	cert, err := c.Obtain(ctx, req)
	if err != nil {
		t.Fatalf("obtain: %v", err)
	}
	t.Logf("obtained %v in %s", req.Domains, time.Since(start).Round(time.Millisecond))
	return cert
}

// validate checks cert the way certpush does before bundling it.
func validate(t *testing.T, srv *testacme.Server, cert *Certificate, domains []string) *bundle.Material {
	t.Helper()
	if n := bytes.Count(cert.Cert, []byte("BEGIN CERTIFICATE")); n != 1 {
		t.Errorf("Cert holds %d certificates, want the leaf alone", n)
	}
	if n := bytes.Count(cert.Chain, []byte("BEGIN CERTIFICATE")); n < 1 {
		t.Errorf("Chain holds %d certificates", n)
	}
	m, err := bundle.ParseMaterial(cert.Cert, cert.Chain, cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(domains, time.Now()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if err := (bundle.Anchor{Roots: srv.RootPool}).Check(m.Leaf, m.Chain, time.Now()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	for _, d := range domains {
		if !bundle.Covers(bundle.Domains(m.Leaf), d) {
			t.Errorf("certificate does not cover %s", d)
		}
	}
	full, err := bundle.ParseMaterial(cert.Fullchain(), nil, cert.Key)
	if err != nil || full.Fingerprint() != m.Fingerprint() || len(full.Chain) != len(m.Chain) {
		t.Errorf("Fullchain does not parse to the same material: %v", err)
	}
	return m
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// countNewAccount counts the newAccount requests pebble has logged.
func countNewAccount(t *testing.T, srv *testacme.Server) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(srv.Dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "POST /sign-me-up")
}

// Wildcard and apex by DNS-01 through lego's exec provider and the
// harness's hook script; then a second client with the same state reuses
// the account.
func TestDNS01WildcardAndAccountReuse(t *testing.T) {
	srv := startPebble(t, testacme.Options{})
	useExecHook(t, srv)
	state := t.TempDir()
	domains := []string{"*.example.test", "example.test"}

	c := newClient(t, srv, state)
	if got := countNewAccount(t, srv); got != 1 {
		t.Fatalf("pebble saw %d newAccount requests, want 1", got)
	}
	keyPath := filepath.Join(c.AccountDir(), accountKeyFile)
	jsonPath := filepath.Join(c.AccountDir(), accountJSONFile)
	if !strings.HasPrefix(c.AccountDir(), filepath.Join(state, "acme")+string(filepath.Separator)) {
		t.Errorf("account dir %s is not under the state dir", c.AccountDir())
	}
	for _, p := range []string{keyPath, jsonPath} {
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s has mode %o, want 600", p, m)
		}
	}

	cert := obtain(t, c, Request{Name: "example.test", Domains: domains, Challenge: dnsChallenge(srv)})
	m := validate(t, srv, cert, domains)
	if k, ok := m.Key.Public().(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key type %T, want ECDSA P-256 (default ec256)", m.Key.Public())
	}
	// The hook removed its records.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if txt, err := srv.Resolver().LookupTXT(ctx, "_acme-challenge.example.test."); err == nil && len(txt) > 0 {
		t.Errorf("TXT records left behind: %v", txt)
	}

	// A second client with the same state: same account, no registration.
	before, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	c2 := newClient(t, srv, state)
	if c2.AccountURI() != c.AccountURI() {
		t.Errorf("account URI %s, want %s", c2.AccountURI(), c.AccountURI())
	}
	cert2 := obtain(t, c2, Request{Domains: []string{"www.example.test"}, KeyType: KeyEC384, Challenge: dnsChallenge(srv)})
	m2 := validate(t, srv, cert2, []string{"www.example.test"})
	if k, ok := m2.Key.Public().(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P384() {
		t.Errorf("key type %T, want ECDSA P-384", m2.Key.Public())
	}
	after, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("account.json changed")
	}
	if got := countNewAccount(t, srv); got != 1 {
		t.Errorf("pebble saw %d newAccount requests, want 1", got)
	}
}

// HTTP-01 with lego's challenge server on the port pebble validates on.
func TestHTTP01Standalone(t *testing.T) {
	port := testproc.MustFreePort(t)
	srv := startPebble(t, testacme.Options{HTTPPort: port})
	c := newClient(t, srv, t.TempDir())
	domains := []string{"standalone.example.test"}
	cert := obtain(t, c, Request{
		Domains: domains,
		KeyType: KeyRSA2048,
		Challenge: Challenge{
			Type:    HTTP01,
			Mode:    ModeStandalone,
			Address: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
		},
	})
	m := validate(t, srv, cert, domains)
	if k, ok := m.Key.Public().(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("key %T, want RSA 2048", m.Key.Public())
	}
	// The challenge server is gone again.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), time.Second); err == nil {
		conn.Close()
		t.Error("challenge server still listening")
	}
}

// dirPublisher publishes into one webroot, as one web host would.
type dirPublisher struct {
	root        string
	failAfter   bool // fail Publish after writing the file
	mu          sync.Mutex
	published   []string
	unpublished []string
}

func (p *dirPublisher) path(token string) string {
	return filepath.Join(p.root, filepath.FromSlash(http01.ChallengePath(token)))
}

func (p *dirPublisher) Publish(ctx context.Context, token string, keyAuth []byte) error {
	p.mu.Lock()
	p.published = append(p.published, token)
	p.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(p.path(token)), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p.path(token), keyAuth, 0o644); err != nil {
		return err
	}
	if p.failAfter {
		return errors.New("host web-02: upload failed")
	}
	return nil
}

func (p *dirPublisher) Unpublish(ctx context.Context, token string) error {
	p.mu.Lock()
	p.unpublished = append(p.unpublished, token)
	p.mu.Unlock()
	if err := os.Remove(p.path(token)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// serveWebroot serves dir on 127.0.0.1:port and records the paths fetched.
func serveWebroot(t *testing.T, port int, dir string) *[]string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		fetched []string
	)
	fs := http.FileServer(http.Dir(dir))
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fetched = append(fetched, r.URL.Path)
		mu.Unlock()
		fs.ServeHTTP(w, r)
	})}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return &fetched
}

// HTTP-01 webroot-push: the token goes through the Publisher into a webroot
// that a web server serves on pebble's HTTP port, and is removed after.
func TestHTTP01WebrootPush(t *testing.T) {
	port := testproc.MustFreePort(t)
	srv := startPebble(t, testacme.Options{HTTPPort: port})
	webroot := t.TempDir()
	fetched := serveWebroot(t, port, webroot)
	c := newClient(t, srv, t.TempDir())

	pub := &dirPublisher{root: webroot}
	domains := []string{"www.push.test", "push.test"}
	cert := obtain(t, c, Request{
		Domains:   domains,
		Challenge: Challenge{Type: HTTP01, Mode: ModeWebrootPush, Publisher: pub},
	})
	validate(t, srv, cert, domains)
	if len(pub.published) != 2 || len(pub.unpublished) != 2 {
		t.Errorf("published %v, unpublished %v; want 2 of each", pub.published, pub.unpublished)
	}
	for _, tok := range pub.published {
		if _, err := os.Stat(pub.path(tok)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("token %s left in the webroot: %v", tok, err)
		}
		found := false
		for _, p := range *fetched {
			found = found || p == http01.ChallengePath(tok)
		}
		if !found {
			t.Errorf("the CA never fetched %s (fetched %v)", http01.ChallengePath(tok), *fetched)
		}
	}

	// A publish that fails on one host fails the order and leaves no file.
	bad := &dirPublisher{root: webroot, failAfter: true}
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	_, err := c.Obtain(ctx, Request{
		Domains:   []string{"fail.push.test"},
		Challenge: Challenge{Type: HTTP01, Mode: ModeWebrootPush, Publisher: bad},
	})
	if err == nil || !strings.Contains(err.Error(), "web-02") {
		t.Fatalf("obtain with a failing publisher: %v", err)
	}
	if len(bad.published) != 1 || len(bad.unpublished) != 1 {
		t.Errorf("published %v, unpublished %v", bad.published, bad.unpublished)
	}
	if _, err := os.Stat(bad.path(bad.published[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("token left after failed publish: %v", err)
	}
}

// Renewal information from pebble, and an order that replaces a
// certificate. This pebble may not offer ARI: then RenewalInfo says
// ErrNoARI and the order goes without "replaces".
func TestRenewalInfoAndReplaces(t *testing.T) {
	srv := startPebble(t, testacme.Options{CertificateValidity: time.Hour})
	useExecHook(t, srv)
	c := newClient(t, srv, t.TempDir())
	domains := []string{"renew.example.test"}
	req := Request{Domains: domains, Challenge: dnsChallenge(srv)}
	first := validate(t, srv, obtain(t, c, req), domains)
	if life := first.Leaf.NotAfter.Sub(first.Leaf.NotBefore); life > time.Hour+time.Minute {
		t.Errorf("lifetime %s, want about an hour", life)
	}

	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	w, err := c.RenewalInfo(ctx, first.Leaf)
	ari := offersARI(t, srv)
	switch {
	case ari && err != nil:
		t.Fatalf("renewal info: %v", err)
	case ari:
		if !w.End.After(w.Start) || !w.Start.Before(first.Leaf.NotAfter) {
			t.Errorf("window %s .. %s for a certificate valid until %s", w.Start, w.End, first.Leaf.NotAfter)
		}
	case !errors.Is(err, ErrNoARI):
		t.Fatalf("renewal info from a CA without ARI: %v, want ErrNoARI", err)
	}
	t.Logf("pebble offers ARI: %v", ari)

	// Default threshold (half of a lifetime of ten days or less): a
	// fresh one-hour cert is not due by it; 50 minutes later it is.
	// Pebble's window for a certificate this short starts at issuance.
	if d := Due(first.Leaf, 0, nil, time.Now()); d.Due {
		t.Errorf("fresh certificate due: %s", d.Reason)
	}
	if d := Due(first.Leaf, 0, w, time.Now()); ari && (!d.Due || !d.ARI) {
		t.Errorf("certificate inside pebble's window not due: %+v", d)
	}
	if d := Due(first.Leaf, 0, nil, first.Leaf.NotBefore.Add(50*time.Minute)); !d.Due {
		t.Errorf("certificate 10 minutes before expiry not due: %s", d.Reason)
	}

	req.ReplacesCert = first.Leaf
	second := validate(t, srv, obtain(t, c, req), domains)
	if second.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Error("renewal returned the same certificate")
	}
	if ari {
		if n, err := srv.LogCount(testacme.LogReplacement); err != nil || n != 1 {
			t.Errorf("pebble accepted %d orders as replacements (%v), want 1", n, err)
		}
	}
}

// offersARI reports whether pebble's directory has a renewalInfo URL.
func offersARI(t *testing.T, srv *testacme.Server) bool {
	resp, err := srv.HTTPClient().Get(srv.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return bytes.Contains(body, []byte(`"renewalInfo"`))
}

// Renewal information parsed from a CA that offers it. The CA here is a
// loopback HTTPS server that answers the directory and renewalInfo only:
// enough for RenewalInfo, which reads the directory and GETs the window.
func TestRenewalInfoWindow(t *testing.T) {
	start := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var srvURL string
	var asked string
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/dir":
			fmt.Fprintf(w, `{"newNonce":%q,"newAccount":%q,"newOrder":%q,"renewalInfo":%q}`,
				srvURL+"/nonce", srvURL+"/acct", srvURL+"/order", srvURL+"/ari")
		case strings.HasPrefix(r.URL.Path, "/ari/"):
			asked = strings.TrimPrefix(r.URL.Path, "/ari/")
			w.Header().Set("Retry-After", "3600")
			fmt.Fprintf(w, `{"suggestedWindow":{"start":%q,"end":%q},"explanationURL":"https://ca.test/why"}`,
				start.Format(time.RFC3339), start.Add(time.Hour).Format(time.RFC3339))
		default:
			http.NotFound(w, r)
		}
	}))
	ts.StartTLS()
	t.Cleanup(ts.Close)
	srvURL = ts.URL

	// A stored account, so that New does not register.
	state := t.TempDir()
	c := &Client{cfg: Config{Directory: srvURL + "/dir", StateDir: state, HTTPTimeout: 5 * time.Second}, log: testlog.Logger(t), base: ts.Client().Transport}
	key, err := loadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	c.acct = &account{key: key}

	leaf := &x509.Certificate{SerialNumber: big.NewInt(0x87654321), AuthorityKeyId: []byte{1, 2, 3, 4}}
	w, err := c.RenewalInfo(t.Context(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Start.Equal(start) || !w.End.Equal(start.Add(time.Hour)) || w.RetryAfter != time.Hour || w.ExplanationURL != "https://ca.test/why" {
		t.Errorf("window %+v", w)
	}
	if asked != "AQIDBA.AIdlQyE" {
		t.Errorf("certificate id %q, want AQIDBA.AIdlQyE (RFC 9773 section 4.1)", asked)
	}
	if d := Due(&x509.Certificate{NotBefore: start.Add(-60 * 24 * time.Hour), NotAfter: start.Add(30 * 24 * time.Hour)}, time.Hour, w, start.Add(time.Minute)); !d.Due || !strings.Contains(d.Reason, "https://ca.test/why") {
		t.Errorf("decision inside the window: %+v", d)
	}
}

// Ending the context stops an order that waits for DNS records that never
// appear (the hook does nothing).
func TestObtainCancel(t *testing.T) {
	srv := startPebble(t, testacme.Options{})
	c := newClient(t, srv, t.TempDir())
	t.Setenv("EXEC_PATH", "/bin/true")
	t.Setenv("EXEC_POLLING_INTERVAL", "1")
	ch := dnsChallenge(srv)
	ch.PropagationTimeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Obtain(ctx, Request{Domains: []string{"never.example.test"}, Challenge: ch})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("obtain: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("obtain returned after %s", took)
	}
	if _, err := c.Obtain(ctx, Request{Domains: []string{"never.example.test"}, Challenge: ch}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("obtain with an ended context: %v", err)
	}
}
