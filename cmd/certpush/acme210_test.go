package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/acme"
	"github.com/certpush/certpush/internal/testacme"
)

// The tests here need pebble 2.10 (profiles, ARI, dns-persist-01), which
// scripts/deps.sh builds.

func newModernWorld(t *testing.T, hosts int, opts testacme.Options, cert map[string]any, extraACME string) *acmeWorld {
	t.Helper()
	w := newACMEWorldWith(t, hosts, opts, cert, domains, extraACME)
	if err := w.srv.RequireModern(t.Context()); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return w
}

func (w *acmeWorld) leaf() *x509.Certificate {
	w.t.Helper()
	l, err := w.current().Leaf()
	if err != nil {
		w.t.Fatal(err)
	}
	return l
}

func (w *acmeWorld) logCount(substr string) int {
	w.t.Helper()
	n, err := w.srv.LogCount(substr)
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func withDNS01(extra map[string]any) map[string]any {
	c := map[string]any{}
	for k, v := range dns01 {
		c[k] = v
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// A certificate of a three-minute profile, renewed over several cycles,
// each one pushed and served; the profile's lifetime is the certificate's.
// Pebble's renewal window for so short a certificate starts at issuance,
// so every renew renews, each order a replacement of the one before.
func TestShortLivedRenewalCycles(t *testing.T) {
	profiles := map[string]testacme.Profile{"threeminutes": {Description: "three minutes", Validity: 3 * time.Minute}}
	w := newModernWorld(t, 2, testacme.Options{Profiles: profiles}, withDNS01(map[string]any{"profile": "threeminutes"}), "")
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	first := w.leaf()
	if life := first.NotAfter.Sub(first.NotBefore) + time.Second; life != 3*time.Minute {
		t.Fatalf("lifetime %s, want the profile's 3m0s", life)
	}
	b := w.current()
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
	metrics := filepath.Join(t.TempDir(), "certpush.prom")
	prev := first
	for cycle := 1; cycle <= 3; cycle++ {
		code, stdout, _ := w.certpush("renew", "--metrics-file", metrics)
		if code != 0 || !strings.Contains(stdout, "renewing: inside the CA's renewal window") || !strings.Contains(stdout, certName+": next renewal ") {
			t.Fatalf("cycle %d: renew %d %q", cycle, code, stdout)
		}
		cur := w.leaf()
		if cur.SerialNumber.Cmp(prev.SerialNumber) == 0 {
			t.Fatalf("cycle %d: no new certificate", cycle)
		}
		b := w.current()
		w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
		if n := w.logCount(testacme.LogReplacement); n != cycle {
			t.Errorf("cycle %d: pebble accepted %d replacements, want %d", cycle, n, cycle)
		}
		// Due at half the lifetime (three minutes is short).
		want := cur.NotAfter.Add(-cur.NotAfter.Sub(cur.NotBefore) / 2).Unix()
		if got := renewalDueMetric(t, metrics); got != want {
			t.Errorf("cycle %d: certpush_cert_renewal_due_timestamp_seconds %d, want %d", cycle, got, want)
		}
		prev = cur
	}
}

// Outside the CA's window nothing is renewed and the window is asked once
// per Retry-After (pebble: six hours), across runs; inside it the renewal
// goes with replaces, which pebble accepts.
func TestRenewFollowsARI(t *testing.T) {
	profiles := map[string]testacme.Profile{"classic": {Validity: 90 * 24 * time.Hour}}
	w := newModernWorld(t, 2, testacme.Options{Profiles: profiles}, dns01, "")
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	leaf := w.leaf()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	if err := w.srv.SetRenewalInfo(ctx, leaf, start, start.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	metrics := filepath.Join(t.TempDir(), "certpush.prom")
	for run := 1; run <= 2; run++ {
		code, stdout, stderr := w.certpush("renew", "--json", "--metrics-file", metrics)
		var out struct {
			Certs []struct {
				Cert       string     `json:"cert"`
				RenewalDue *time.Time `json:"renewal_due"`
			} `json:"certs"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil || len(out.Certs) != 1 {
			t.Fatalf("run %d: renew --json: %d %v %q", run, code, err, stdout)
		}
		if d := out.Certs[0].RenewalDue; d == nil || !d.Equal(start) {
			t.Errorf("run %d: renewal_due %v, want the window's start %s", run, d, start)
		}
		if !strings.Contains(stderr, "not due") || !strings.Contains(stderr, "next renewal "+start.UTC().Format(time.RFC3339)+" (start of the CA's renewal window") {
			t.Errorf("run %d: notes %q", run, stderr)
		}
		if n := w.logCount(testacme.LogRenewalInfo); n != 1 {
			t.Errorf("run %d: pebble saw %d renewalInfo requests, want 1 (Retry-After)", run, n)
		}
		if got := renewalDueMetric(t, metrics); got != start.Unix() {
			t.Errorf("run %d: certpush_cert_renewal_due_timestamp_seconds %d, want %d", run, got, start.Unix())
		}
	}
	if w.leaf().SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Fatal("renewed outside the window")
	}
	if n := w.logCount(testacme.LogNewOrder); n != 1 {
		t.Errorf("pebble saw %d orders, want the obtain's only", n)
	}

	// Six hours on: the stored Retry-After has passed (moved back here
	// rather than waited for), the CA is asked and its window is now.
	statePath := acme.ARIStatePath(w.stateDir, certName)
	st, err := acme.LoadARIState(statePath)
	if err != nil || st == nil || st.Serial != leaf.SerialNumber.Text(16) {
		t.Fatalf("ARI state %+v, %v", st, err)
	}
	st.NextFetch = time.Now().Add(-time.Second)
	data, _ := json.Marshal(st)
	if err := os.WriteFile(statePath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := w.srv.SetRenewalInfo(ctx, leaf, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := w.certpush("renew")
	if code != 0 || !strings.Contains(stdout, "renewing: inside the CA's renewal window") {
		t.Fatalf("renew inside the window: %d %q", code, stdout)
	}
	if n := w.logCount(testacme.LogRenewalInfo); n != 2 {
		t.Errorf("pebble saw %d renewalInfo requests, want 2", n)
	}
	if n := w.logCount(testacme.LogReplacement); n != 1 {
		t.Errorf("pebble accepted %d replacement orders, want 1", n)
	}
	b := w.current()
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
}

// An unknown profile is refused before any order, naming what the CA
// offers.
func TestObtainUnknownProfile(t *testing.T) {
	profiles := map[string]testacme.Profile{"classic": {Validity: 90 * 24 * time.Hour}, "shortlived": {Validity: 160 * time.Hour}}
	w := newModernWorld(t, 1, testacme.Options{Profiles: profiles}, dns01, "  profile: sixdays\n")
	code, _, stderr := w.certpush("obtain", certName)
	if code != 2 || !strings.Contains(stderr, `unknown certificate profile "sixdays": the CA offers classic, shortlived`) {
		t.Fatalf("obtain with an unknown profile: %d %q", code, stderr)
	}
	if n := w.logCount(testacme.LogNewOrder); n != 0 {
		t.Errorf("pebble saw %d orders", n)
	}
}

// After a key compromise: revoke (pebble's API shows it), obtain refuses
// to go on without --new-key, --new-key makes a new key, and an emergency
// push puts it on every host at once.
func TestRevokeNewKeyEmergencyPush(t *testing.T) {
	w := newModernWorld(t, 3, testacme.Options{}, withDNS01(map[string]any{"canary": []string{"node-1"}}), "")
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	old := w.leaf()
	if code, _, stderr := w.certpush("revoke", certName, "--reason", "stolen"); code != 2 || !strings.Contains(stderr, "keyCompromise") {
		t.Errorf("revoke with a bad reason: %d %q", code, stderr)
	}
	code, stdout, _ := w.certpush("revoke", certName, "--reason", "keyCompromise")
	if code != 0 || !strings.Contains(stdout, "revoked (keyCompromise)") || !strings.Contains(stdout, "--new-key") {
		t.Fatalf("revoke: %d %q", code, stdout)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := w.srv.CertStatus(ctx, old)
	if err != nil || st.Status != "Revoked" || st.Reason == nil || *st.Reason != 1 {
		t.Fatalf("pebble's status of the revoked certificate: %+v, %v", st, err)
	}
	if code, _, stderr := w.certpush("revoke", certName); code != 2 || !strings.Contains(stderr, "revoked already") {
		t.Errorf("second revoke: %d %q", code, stderr)
	}
	if code, _, stderr := w.certpush("obtain", certName); code != 2 || !strings.Contains(stderr, "--new-key") {
		t.Fatalf("obtain after a key compromise without --new-key: %d %q", code, stderr)
	}
	code, stdout, _ = w.certpush("obtain", certName, "--new-key", "--no-push")
	if code != 0 || !strings.Contains(stdout, "new private key") {
		t.Fatalf("obtain --new-key: %d %q", code, stdout)
	}
	fresh := w.leaf()
	if string(fresh.RawSubjectPublicKeyInfo) == string(old.RawSubjectPublicKeyInfo) {
		t.Fatal("the new certificate has the compromised key")
	}
	code, stdout, _ = w.certpush("push", certName, "--emergency", "--json")
	var out pushOutput
	if err := json.Unmarshal([]byte(stdout), &out); code != 0 || err != nil {
		t.Fatalf("push --emergency: %d %v %q", code, err, stdout)
	}
	if len(out.Certs) != 1 || len(out.Certs[0].Results) != 3 {
		t.Fatalf("push --emergency results %+v", out)
	}
	waves := map[string]int{}
	var raw struct {
		Certs []struct {
			Results []struct {
				Wave string `json:"wave"`
			} `json:"results"`
		} `json:"certs"`
	}
	json.Unmarshal([]byte(stdout), &raw)
	for _, r := range raw.Certs[0].Results {
		waves[r.Wave]++
	}
	if waves["emergency"] != 3 {
		t.Errorf("waves %v, want all three hosts in the emergency wave (no canary)", waves)
	}
	b := w.current()
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint, b.Manifest.Fingerprint)
}

var persistLine = regexp.MustCompile(`(?m)^  (_validation-persist\.\S+) IN TXT ("[^\n]*")$`)

// dns-persist-01 for real against pebble: obtain prints the record and,
// while it is missing, says so and orders nothing; with the record in
// challtestsrv's DNS the certificate is issued and pushed.
func TestObtainDNSPersist01(t *testing.T) {
	cert := map[string]any{"challenge": map[string]any{"type": "dns-persist-01", "wildcard": true}}
	w := newModernWorld(t, 2, testacme.Options{}, cert, "")
	code, stdout, stderr := w.certpush("obtain", certName)
	if code == 0 || !strings.Contains(stderr, "no TXT record at _validation-persist.example.test.") {
		t.Fatalf("obtain without the record: %d %q", code, stderr)
	}
	m := persistLine.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no record printed: %q", stdout)
	}
	value, err := strconv.Unquote(m[2])
	if err != nil {
		t.Fatal(err)
	}
	accounts, _ := filepath.Glob(filepath.Join(w.stateDir, "acme", "*", "*", "account.json"))
	var acct struct {
		Registration struct {
			URI string `json:"uri"`
		} `json:"registration"`
	}
	if len(accounts) != 1 {
		t.Fatalf("accounts %v", accounts)
	}
	data, _ := os.ReadFile(accounts[0])
	json.Unmarshal(data, &acct)
	if want := "pebble.letsencrypt.org; accounturi=" + acct.Registration.URI + "; policy=wildcard"; acct.Registration.URI == "" || value != want {
		t.Fatalf("record value %q, want %q", value, want)
	}
	if n := w.logCount(testacme.LogNewOrder); n != 0 {
		t.Errorf("pebble saw %d orders while the record was missing", n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := w.srv.SetTXT(ctx, m[1], value); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain with the record: %d", code)
	}
	b := w.current()
	w.wantServed(b.Manifest.Fingerprint, b.Manifest.Fingerprint)
}

// renewalDueMetric reads the certificate's renewal-due gauge from a
// metrics file.
func renewalDueMetric(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prefix := "certpush_cert_renewal_due_timestamp_seconds{cert=\"" + certName + "\"} "
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no %s in %s:\n%s", prefix, path, data)
	return 0
}
