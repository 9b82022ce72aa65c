package acme

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testlog"
)

// startModern starts pebble and requires v2.10 features (profiles, ARI):
// the tests below need what Debian's pebble 2.4 lacks.
func startModern(t *testing.T, opts testacme.Options) *testacme.Server {
	t.Helper()
	srv := startPebble(t, opts)
	if err := srv.RequireModern(t.Context()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return srv
}

func logCount(t *testing.T, srv *testacme.Server, substr string) int {
	t.Helper()
	n, err := srv.LogCount(substr)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var testProfiles = map[string]testacme.Profile{
	"classic":    {Description: "ninety days", Validity: 90 * 24 * time.Hour},
	"shortlived": {Description: "six days", Validity: 160 * time.Hour},
	"minutes":    {Description: "ten minutes", Validity: 10 * time.Minute},
}

// Each profile gives its lifetime; an unknown one is refused before any
// order, with the list the CA offers.
func TestProfiles(t *testing.T) {
	srv := startModern(t, testacme.Options{Profiles: testProfiles})
	useExecHook(t, srv)
	c := newClient(t, srv, t.TempDir())

	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	offered, err := c.Profiles(ctx)
	if err != nil || len(offered) != 3 || offered["shortlived"] != "six days" {
		t.Fatalf("profiles %v, %v", offered, err)
	}

	_, err = c.Obtain(ctx, Request{Domains: []string{"p.example.test"}, Profile: "sixday", Challenge: dnsChallenge(srv)})
	if !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("unknown profile: %v, want ErrUnknownProfile", err)
	}
	for _, want := range []string{`"sixday"`, "classic (ninety days)", "minutes (ten minutes)", "shortlived (six days)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if n := logCount(t, srv, testacme.LogNewOrder); n != 0 {
		t.Errorf("pebble saw %d orders for an unknown profile, want none", n)
	}

	for _, name := range []string{"shortlived", "minutes"} {
		domains := []string{name + ".example.test"}
		got := obtain(t, c, Request{Domains: domains, Profile: name, Challenge: dnsChallenge(srv)})
		if got.Profile != name {
			t.Errorf("certificate profile %q, want %q", got.Profile, name)
		}
		m := validate(t, srv, got, domains)
		life := m.Leaf.NotAfter.Sub(m.Leaf.NotBefore) + time.Second // pebble's notAfter is inclusive
		if want := testProfiles[name].Validity; life != want {
			t.Errorf("%s: lifetime %s, want %s", name, life, want)
		}
	}
}

// An account needs the binding pebble requires; with it, it registers.
func TestEABRequired(t *testing.T) {
	mac := make([]byte, 32)
	rand.Read(mac)
	hmac := base64.RawURLEncoding.EncodeToString(mac)
	srv := startModern(t, testacme.Options{EABRequired: true, EABKeys: map[string]string{"kid-1": hmac}})
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	cfg := Config{Directory: srv.DirectoryURL, Email: "ops@example.test", CARoots: srv.ListenerPool, Logger: testlog.Logger(t)}

	cfg.StateDir = t.TempDir()
	if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "externalAccountRequired") && !strings.Contains(strings.ToLower(err.Error()), "external account") {
		t.Fatalf("registration without a binding: %v, want pebble's refusal", err)
	}
	cfg.StateDir = t.TempDir()
	cfg.EAB = &EAB{KID: "kid-1", HMACKey: base64.RawURLEncoding.EncodeToString([]byte("not the key at all, 32 bytes....."))}
	if _, err := New(ctx, cfg); err == nil {
		t.Fatal("registration with a wrong HMAC key succeeded")
	}
	cfg.StateDir = t.TempDir()
	cfg.EAB = &EAB{KID: "kid-1", HMACKey: hmac}
	c, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("registration with the binding: %v", err)
	}
	if n := logCount(t, srv, `Successful newAccount Binding with CA using kid "kid-1"`); n != 1 {
		t.Errorf("pebble logged %d bindings, want 1", n)
	}
	useExecHook(t, srv)
	validate(t, srv, obtain(t, c, Request{Domains: []string{"eab.example.test"}, Challenge: dnsChallenge(srv)}), []string{"eab.example.test"})
}

// preferred_chain picks pebble's alternate chain by its root's name; the
// default chain goes to the main root.
func TestPreferredChain(t *testing.T) {
	srv := startModern(t, testacme.Options{AlternateRoots: 1})
	useExecHook(t, srv)
	c := newClient(t, srv, t.TempDir())
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	altPEM, err := srv.AlternateRoot(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	alt := parsePEMCert(t, altPEM)
	main := parsePEMCert(t, srv.Root)
	if alt.Subject.CommonName == main.Subject.CommonName {
		t.Fatalf("alternate root has the main root's name %q", alt.Subject.CommonName)
	}
	top := func(cert *Certificate) *x509.Certificate {
		rest, last := cert.Chain, []byte(nil)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			last = b.Bytes
		}
		x, err := x509.ParseCertificate(last)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	domains := []string{"chain.example.test"}
	def := obtain(t, c, Request{Domains: domains, Challenge: dnsChallenge(srv)})
	if got := top(def).Issuer.CommonName; got != main.Subject.CommonName {
		t.Errorf("default chain ends under %q, want %q", got, main.Subject.CommonName)
	}
	pref := obtain(t, c, Request{Domains: domains, PreferredChain: alt.Subject.CommonName, Challenge: dnsChallenge(srv)})
	if got := top(pref).Issuer.CommonName; got != alt.Subject.CommonName {
		t.Errorf("preferred chain ends under %q, want %q", got, alt.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(alt)
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM(pref.Chain)
	leaf := parsePEMCert(t, pref.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: domains[0]}); err != nil {
		t.Errorf("preferred chain does not verify to the alternate root: %v", err)
	}
}

func parsePEMCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	x, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// The window is asked once per Retry-After; inside it, the renewal is
// accepted by pebble as a replacement.
func TestCachedRenewalInfo(t *testing.T) {
	srv := startModern(t, testacme.Options{Profiles: map[string]testacme.Profile{"classic": testProfiles["classic"]}})
	useExecHook(t, srv)
	c := newClient(t, srv, t.TempDir())
	domains := []string{"ari.example.test"}
	req := Request{Domains: domains, Challenge: dnsChallenge(srv)}
	leaf := validate(t, srv, obtain(t, c, req), domains).Leaf
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	now := time.Now()
	future := now.Add(10 * 24 * time.Hour).Truncate(time.Second)
	if err := srv.SetRenewalInfo(ctx, leaf, future, future.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	path := ARIStatePath(t.TempDir(), "ari")

	res, err := c.CachedRenewalInfo(ctx, path, leaf, now)
	if err != nil || !res.Asked || res.Window == nil || !res.Window.Start.Equal(future) {
		t.Fatalf("first ask: %+v, %v", res, err)
	}
	// Pebble's Retry-After is six hours.
	if d := res.NextFetch.Sub(now); d < 5*time.Hour || d > 7*time.Hour {
		t.Errorf("ask again in %s, want pebble's six hours", d)
	}
	if fileMode(t, path) != 0o600 {
		t.Errorf("state mode %o", fileMode(t, path))
	}
	if d := Due(leaf, 0, res.Window, now); d.Due || !d.RenewAt.Equal(future) {
		t.Errorf("outside the window: %+v", d)
	}
	// An hour later: the stored window, not a request.
	res2, err := c.CachedRenewalInfo(ctx, path, leaf, now.Add(time.Hour))
	if err != nil || res2.Asked || !res2.Window.Start.Equal(future) {
		t.Errorf("second ask: %+v, %v", res2, err)
	}
	if n := logCount(t, srv, testacme.LogRenewalInfo); n != 1 {
		t.Errorf("pebble saw %d renewalInfo requests, want 1", n)
	}
	// After Retry-After the CA is asked again, and its window is now.
	if err := srv.SetRenewalInfo(ctx, leaf, now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	res3, err := c.CachedRenewalInfo(ctx, path, leaf, now.Add(7*time.Hour))
	if err != nil || !res3.Asked {
		t.Fatalf("third ask: %+v, %v", res3, err)
	}
	if n := logCount(t, srv, testacme.LogRenewalInfo); n != 2 {
		t.Errorf("pebble saw %d renewalInfo requests, want 2", n)
	}
	if d := Due(leaf, 0, res3.Window, now); !d.Due {
		t.Fatalf("inside the window, not due: %+v", d)
	}
	req.ReplacesCert = leaf
	obtain(t, c, req)
	if n := logCount(t, srv, testacme.LogReplacement); n != 1 {
		t.Errorf("pebble accepted %d replacement orders, want 1", n)
	}
	// The same certificate replaced again (an earlier renewal that was
	// not kept): pebble says alreadyReplaced; the order goes without.
	obtain(t, c, req)
	if n := logCount(t, srv, testacme.LogReplacement); n != 1 {
		t.Errorf("pebble accepted %d replacement orders, want still 1", n)
	}
	if n := logCount(t, srv, testacme.LogNewOrder); n != 4 {
		t.Errorf("pebble saw %d orders, want 4 (first, replacement, refused replacement, plain)", n)
	}
}

// Revocation shows in pebble's management API, with its reason.
func TestRevoke(t *testing.T) {
	srv := startModern(t, testacme.Options{})
	useExecHook(t, srv)
	c := newClient(t, srv, t.TempDir())
	got := obtain(t, c, Request{Domains: []string{"revoke.example.test"}, Challenge: dnsChallenge(srv)})
	leaf := parsePEMCert(t, got.Cert)
	ctx, cancel := context.WithTimeout(t.Context(), issuanceTimeout)
	defer cancel()
	if st, err := srv.CertStatus(ctx, leaf); err != nil || st.Status != "Valid" {
		t.Fatalf("before: %+v, %v", st, err)
	}
	if err := c.Revoke(ctx, got.Cert, RevocationReasons["keyCompromise"]); err != nil {
		t.Fatal(err)
	}
	st, err := srv.CertStatus(ctx, leaf)
	if err != nil || st.Status != "Revoked" || st.Reason == nil || *st.Reason != 1 {
		t.Fatalf("after: %+v, %v", st, err)
	}
	if err := c.Revoke(ctx, got.Cert, RevocationReasons["superseded"]); err == nil {
		t.Error("second revocation accepted")
	}
}
