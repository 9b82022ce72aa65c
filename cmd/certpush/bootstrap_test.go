package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

// TestBootstrapThenPush sets a node up in the documented order: nothing
// installed, certnode bootstrap, nginx started on the placeholder (status
// calls it untrusted), then the first push replaces it with the real
// certificate, issued before the placeholder.
func TestBootstrapThenPush(t *testing.T) {
	w := newWorld(t, 2)
	h := w.fleet.Hosts[1]
	if err := h.StopNginx(); err != nil {
		t.Fatal(err)
	}
	// A new node: nothing under its root.
	for _, d := range []string{"live", "archive"} {
		if err := os.RemoveAll(filepath.Join(h.Root, d)); err != nil {
			t.Fatal(err)
		}
	}
	// The real certificate exists before the node does.
	is, p := w.issue(devca.Leaf{NotBefore: time.Now().Add(-48 * time.Hour)})
	if code, _, _ := w.certpush("import", certName, "--cert", p[0], "--chain", p[1], "--key", p[2]); code != 0 {
		t.Fatal("import failed")
	}

	cfg, err := w.fleet.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.CombinedOutput(w.fleet.Certnode + " --config " + h.CertnodeConfig + " bootstrap " + certName)
	s.Close()
	if err != nil || !strings.Contains(string(out), "placeholder") {
		t.Fatalf("certnode bootstrap: %v\n%s", err, out)
	}
	placeholder, err := bundle.Open(filepath.Join(h.Root, "live", certName))
	if err != nil || placeholder.Manifest.Source != bundle.SourcePlaceholder {
		t.Fatalf("live after bootstrap: %v, %v", placeholder, err)
	}
	if err := h.StartNginx(context.Background()); err != nil {
		t.Fatalf("nginx on the placeholder: %v", err)
	}
	if fp, err := h.ServedFingerprint(context.Background(), "www.example.test"); err != nil || fp != placeholder.Manifest.Fingerprint {
		t.Fatalf("nginx serves %s, %v; want the placeholder %s", fp, err, placeholder.Manifest.Fingerprint)
	}
	if _, states, _ := w.status(); states[h.Name] != "untrusted" {
		t.Errorf("status of the placeholder host: %v, want untrusted", states)
	}

	if code, res, errs := w.pushJSON("--hosts", h.Name); code != 0 || res[h.Name] != "installed" {
		t.Fatalf("first push: %d %v %v", code, res, errs)
	}
	if fp, err := h.ServedFingerprint(context.Background(), "www.example.test"); err != nil || fp != bundle.Fingerprint(is.Leaf) {
		t.Errorf("after the first push %s serves %s, %v", h.Name, fp, err)
	}
	if _, states, _ := w.status(); states[h.Name] != "aligned" {
		t.Errorf("after the first push: %v", states)
	}
}
