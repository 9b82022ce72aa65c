package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestTrustChecksFingerprint trusts a real sshd's host key the only way
// certpush allows: by its fingerprint. Without one nothing changes; a
// wrong one is refused; the right one adds the line, and a push then
// reaches the host.
func TestTrustChecksFingerprint(t *testing.T) {
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	known := filepath.Join(t.TempDir(), "known_hosts")
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), w.fleet.KnownHosts) {
		t.Fatalf("config does not name %s", w.fleet.KnownHosts)
	}
	if err := os.WriteFile(w.config, []byte(strings.ReplaceAll(string(cfg), w.fleet.KnownHosts, known)), 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(w.fleet.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	_, _, hostKey, _, _, err := ssh.ParseKnownHosts(data)
	if err != nil {
		t.Fatal(err)
	}
	fp := ssh.FingerprintSHA256(hostKey)

	code, stdout, _ := w.certpush("trust", h.Name)
	if code != 0 || !strings.Contains(stdout, fp) || !strings.Contains(stdout, "nothing changed") {
		t.Errorf("trust without --fingerprint: %d %q, want the fingerprint %s and nothing changed", code, stdout, fp)
	}
	if _, err := os.Stat(known); !os.IsNotExist(err) {
		t.Fatalf("trust without --fingerprint wrote %s (%v)", known, err)
	}
	w.importNew()
	if code, _, stderr := w.certpush("push"); code != 2 || !strings.Contains(stderr, "known_hosts file is missing") || !strings.Contains(stderr, "certpush trust HOST --fingerprint") {
		t.Errorf("push with no known_hosts yet exited %d: %s", code, stderr)
	}

	code, _, stderr := w.certpush("trust", h.Name, "--fingerprint", "SHA256:"+strings.Repeat("A", 43))
	if code != 1 || !strings.Contains(stderr, "refusing to trust it") || !strings.Contains(stderr, fp) {
		t.Errorf("trust with a wrong fingerprint: %d %q", code, stderr)
	}
	if _, err := os.Stat(known); !os.IsNotExist(err) {
		t.Fatalf("trust with a wrong fingerprint wrote %s (%v)", known, err)
	}

	if code, stdout, stderr := w.certpush("trust", h.Name, "--fingerprint", fp); code != 0 || !strings.Contains(stdout, "trusted") {
		t.Fatalf("trust with the right fingerprint: %d %q %q", code, stdout, stderr)
	}
	if code, stdout, _ := w.certpush("trust", h.Name, "--fingerprint", fp); code != 0 || !strings.Contains(stdout, "already trusted") {
		t.Errorf("trust again: %d %q", code, stdout)
	}
	got, err := os.ReadFile(known)
	if err != nil || strings.Count(string(got), "\n") != 1 {
		t.Fatalf("known_hosts after two trusts: %q (%v), want one line", got, err)
	}
	if code, _, stderr := w.certpush("push"); code != 0 {
		t.Errorf("push after trust exited %d: %s", code, stderr)
	}
}
