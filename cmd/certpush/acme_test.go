package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testfleet"
)

// acmeWorld is a fleet plus a real pebble and its DNS server, with
// certpush configured to obtain from pebble.
type acmeWorld struct {
	*world
	srv *testacme.Server
}

func newACMEWorld(t *testing.T, hosts int, validity time.Duration, cert map[string]any) *acmeWorld {
	t.Helper()
	return newACMEWorldFor(t, hosts, validity, cert, domains)
}

func newACMEWorldFor(t *testing.T, hosts int, validity time.Duration, cert map[string]any, names []string) *acmeWorld {
	t.Helper()
	return newACMEWorldWith(t, hosts, testacme.Options{CertificateValidity: validity}, cert, names, "")
}

// newACMEWorldWith starts pebble with opts (HTTPPort set here) and adds
// extraACME (indented lines) to the config's acme: section.
func newACMEWorldWith(t *testing.T, hosts int, opts testacme.Options, cert map[string]any, names []string, extraACME string) *acmeWorld {
	t.Helper()
	testfleet.Require(t, testacme.DefaultPebble, testacme.DefaultChallTestSrv)
	w := newWorldFor(t, hosts, names)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts.HTTPPort = w.fleet.Hosts[0].HTTPPort
	srv, err := testacme.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := w.fleet.TrustRoot(srv.Root); err != nil {
		t.Fatal(err)
	}
	script, err := srv.ExecScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// lego's exec provider reads these; no waiting between wildcard and
	// apex records.
	t.Setenv("EXEC_PATH", script)
	t.Setenv("EXEC_SEQUENCE_INTERVAL", "0")
	t.Setenv("EXEC_POLLING_INTERVAL", "1")
	t.Setenv("EXEC_PROPAGATION_TIMEOUT", "20")
	extra := fmt.Sprintf(`acme:
  directory: %s
  email: ops@example.test
  ca_file: %s
  dns_resolvers: [%q]
  disable_propagation_check: true
`, srv.DirectoryURL, srv.ListenerCAFile, srv.DNSAddr) + extraACME
	if err := w.fleet.WriteInventory(w.config, testfleet.InventoryOptions{StateDir: w.stateDir, Cert: cert, Extra: extra}); err != nil {
		t.Fatal(err)
	}
	return &acmeWorld{world: w, srv: srv}
}

var dns01 = map[string]any{"challenge": map[string]any{"type": "dns-01", "provider": "exec"}}

func (w *acmeWorld) current() *bundle.Bundle {
	w.t.Helper()
	b, err := w.store().Current(certName)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func TestObtainWildcardByDNS01AndPush(t *testing.T) {
	w := newACMEWorld(t, 2, 0, dns01)
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	b := w.current()
	if b.Manifest.Source != bundle.SourceACME {
		t.Errorf("source %q, want acme", b.Manifest.Source)
	}
	for _, d := range []string{"example.test", "*.example.test", "www.example.test"} {
		if !bundle.Covers(b.Manifest.Domains, d) {
			t.Errorf("certificate %v does not cover %s", b.Manifest.Domains, d)
		}
	}
	// The chain verifies to pebble's root.
	files := map[string][]byte{}
	for _, f := range []string{bundle.CertFile, bundle.ChainFile, bundle.KeyFile} {
		files[f], _ = b.ReadFile(f)
	}
	mat, err := bundle.ParseMaterial(files[bundle.CertFile], files[bundle.ChainFile], files[bundle.KeyFile])
	if err != nil {
		t.Fatal(err)
	}
	if err := mat.Validate(b.Manifest.Domains, time.Now()); err != nil {
		t.Errorf("validate: %v", err)
	}
	if err := (bundle.Anchor{Roots: w.srv.RootPool}).Check(mat.Leaf, mat.Chain, time.Now()); err != nil {
		t.Errorf("issued chain: %v", err)
	}
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)

	// The account is registered once and reused.
	accounts, _ := filepath.Glob(filepath.Join(w.stateDir, "acme", "*", "*", "account.json"))
	if len(accounts) != 1 {
		t.Fatalf("account files: %v", accounts)
	}
	before, _ := os.ReadFile(accounts[0])
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("second obtain exited %d", code)
	}
	after, _ := os.ReadFile(accounts[0])
	again, _ := filepath.Glob(filepath.Join(w.stateDir, "acme", "*", "*", "account.json"))
	if string(before) != string(after) || len(again) != 1 {
		t.Error("the second obtain registered a new account")
	}
	if w.current().Manifest.ID == b.Manifest.ID {
		t.Error("obtain did not make a new certificate")
	}
	fi, err := os.Stat(filepath.Join(filepath.Dir(accounts[0]), "account.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("account key mode %v %v, want 0600", fi.Mode().Perm(), err)
	}
}

func TestObtainByHTTP01WebrootPush(t *testing.T) {
	// Each test host has its own webroot (hosts.*.webroot); the
	// certificate's webroot is the default for hosts without one.
	w := newACMEWorldFor(t, 3, 0, map[string]any{
		"challenge": map[string]any{"type": "http-01", "mode": "webroot-push", "webroot": "/nonexistent"},
	}, []string{"example.test"})
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	b := w.current()
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint, b.Manifest.Fingerprint)
	// pebble fetched the token from the first host's nginx; every host had
	// it, and no host has it any more.
	log, err := os.ReadFile(filepath.Join(w.fleet.Hosts[0].NginxPrefix, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "/.well-known/acme-challenge/") || !strings.Contains(string(log), " 200 ") {
		t.Errorf("nginx did not serve the token:\n%s", log)
	}
	for _, h := range w.fleet.Hosts {
		left, _ := os.ReadDir(filepath.Join(h.Webroot, ".well-known", "acme-challenge"))
		if len(left) != 0 {
			t.Errorf("%s: token files left: %v", h.Name, left)
		}
	}
}

func TestRenewOnlyWhenDue(t *testing.T) {
	// Ten days: pebble's renewal window for it starts about five and a
	// half days in (a third before expiry, less a day), the default
	// threshold (half, for ten days or less) five days in.
	w := newACMEWorld(t, 2, 10*24*time.Hour, dns01)
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	first := w.current().Manifest.ID
	// A fresh certificate is not due: nothing is obtained, nothing
	// changes; renew says when it will be.
	code, stdout, _ := w.certpush("renew")
	if code != 0 || !strings.Contains(stdout, "not due") || !strings.Contains(stdout, certName+": next renewal ") {
		t.Fatalf("renew of a fresh cert: %d %q", code, stdout)
	}
	if w.current().Manifest.ID != first {
		t.Fatal("renew re-issued a valid certificate")
	}
	// With --json, stdout holds nothing but the JSON (notes go to stderr).
	code, stdout, stderr := w.certpush("renew", "--json")
	var out pushOutput
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || !strings.Contains(stderr, "not due") {
		t.Errorf("renew --json: %d, %v, stderr %q", code, err, stderr)
	}
	// With renew_before above its lifetime, it is due.
	cert := map[string]any{"renew_before": "250h"}
	for k, v := range dns01 {
		cert[k] = v
	}
	cfg, _ := os.ReadFile(w.config)
	w.fleet.WriteInventory(w.config, testfleet.InventoryOptions{StateDir: w.stateDir, Cert: cert, Extra: acmeSection(string(cfg))})
	code, stdout, _ = w.certpush("renew")
	if code != 0 || !strings.Contains(stdout, "renewing") {
		t.Fatalf("renew inside the threshold: %d %q", code, stdout)
	}
	b := w.current()
	if b.Manifest.ID == first {
		t.Fatal("renew did not obtain a new certificate")
	}
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
}

// acmeSection returns the acme: block of a config.
func acmeSection(cfg string) string {
	i := strings.Index(cfg, "acme:")
	return cfg[i:]
}

func TestCertbotDeployHookEndToEnd(t *testing.T) {
	testfleet.Require(t, "/usr/bin/certbot")
	w := newACMEWorld(t, 2, 0, nil)
	dir := t.TempDir()
	// certbot's manual DNS hooks, through the same challtestsrv.
	auth := filepath.Join(dir, "auth.sh")
	cleanup := filepath.Join(dir, "cleanup.sh")
	os.WriteFile(auth, []byte("#!/bin/sh\nexec \"$EXEC_PATH\" present \"_acme-challenge.$CERTBOT_DOMAIN.\" \"$CERTBOT_VALIDATION\"\n"), 0o755)
	os.WriteFile(cleanup, []byte("#!/bin/sh\nexec \"$EXEC_PATH\" cleanup \"_acme-challenge.$CERTBOT_DOMAIN.\" \"$CERTBOT_VALIDATION\"\n"), 0o755)
	hook, err := filepath.Abs("../../hooks/certbot-deploy-certpush")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "certbot", "certonly", "--non-interactive", "--agree-tos",
		"--email", "ops@example.test", "--server", w.srv.DirectoryURL,
		"--config-dir", filepath.Join(dir, "etc"), "--work-dir", filepath.Join(dir, "work"), "--logs-dir", filepath.Join(dir, "logs"),
		"--cert-name", certName, "-d", "example.test", "-d", "*.example.test",
		"--manual", "--preferred-challenges", "dns", "--manual-auth-hook", auth, "--manual-cleanup-hook", cleanup,
		"--deploy-hook", hook)
	cmd.Env = append(os.Environ(),
		"REQUESTS_CA_BUNDLE="+w.srv.ListenerCAFile,
		"CERTPUSH="+certpushBin,
		"CERTPUSH_CONFIG="+w.config)
	out, err := cmd.CombinedOutput()
	t.Logf("certbot:\n%s", out)
	if err != nil {
		t.Fatalf("certbot: %v", err)
	}
	b := w.current()
	if b.Manifest.Source != bundle.SourceCertbot {
		t.Errorf("source %q, want certbot", b.Manifest.Source)
	}
	live, err := os.ReadFile(filepath.Join(dir, "etc", "live", certName, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := b.ReadFile(bundle.CertFile)
	if string(leaf) != string(live) {
		t.Error("the bundle does not hold certbot's certificate")
	}
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
}
