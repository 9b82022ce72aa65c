package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

func certnode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// testCA issues the tests' certificates.
var testCA = sync.OnceValues(func() (*devca.CA, error) { return devca.New("cli test") })

// writeConfig writes dir/certnode.yaml for example.com, trusting s and
// testCA's root, and returns its path.
func writeConfig(t *testing.T, dir, incoming string, s *bundle.Signer) string {
	t.Helper()
	ca, err := testCA()
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(roots, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "certnode.yaml")
	conf := fmt.Sprintf("root: %s\nincoming: %s\ntrusted_keys: [%q]\nroots: %s\ncerts:\n  example.com:\n", filepath.Join(dir, "etc"), incoming, s.PublicKey(), roots)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pushBundle writes a signed bundle for example.com into incoming.
func pushBundle(t *testing.T, incoming string, s *bundle.Signer, notAfter time.Time) string {
	t.Helper()
	ca, err := testCA()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.Issue(devca.Leaf{Domains: []string{"example.com"}, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.NewManifest("example.com", mat, bundle.SourceImport, time.Now())
	if err := s.Sign(m); err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(filepath.Join(incoming, "example.com", mat.ID()), mat, m); err != nil {
		t.Fatal(err)
	}
	return mat.ID()
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := bundle.NewSigner(key)
	incoming := filepath.Join(dir, "incoming")
	cfgPath := writeConfig(t, dir, incoming, s)

	if code, _, stderr := certnode(t, "--config", cfgPath, "check"); code != 1 || stderr != "" {
		t.Errorf("check before install: %d %q", code, stderr)
	}
	id := pushBundle(t, incoming, s, time.Now().Add(10*24*time.Hour))
	code, stdout, stderr := certnode(t, "--config", cfgPath, "install", "--json", "--id", id, "example.com")
	if code != 0 {
		t.Fatalf("install: %d %s %s", code, stdout, stderr)
	}
	var out struct {
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || len(out.Results) != 1 {
		t.Fatalf("install output %q: %v", stdout, err)
	}
	if r := out.Results[0]; r["cert"] != "example.com" || r["result"] != "installed" || r["id"] != id || r["error"] != "" {
		t.Errorf("result %v", r)
	}

	code, stdout, _ = certnode(t, "--config", cfgPath, "install", "example.com")
	if code != 0 || !strings.Contains(stdout, "nothing") {
		t.Errorf("second install: %d %q", code, stdout)
	}
	code, stdout, _ = certnode(t, "--config", cfgPath, "status", "--json")
	if code != 0 || !strings.Contains(stdout, id) {
		t.Errorf("status: %d %q", code, stdout)
	}
	if code, stdout, _ = certnode(t, "--config", cfgPath, "check"); code != 1 || !strings.Contains(stdout, "expires in") {
		t.Errorf("check 14: %d %q", code, stdout)
	}
	if code, stdout, _ = certnode(t, "--config", cfgPath, "check", "--days", "5"); code != 0 {
		t.Errorf("check 5: %d %q", code, stdout)
	}
	t.Setenv("CERTNODE_CONFIG", cfgPath)
	if code, stdout, _ = certnode(t, "check", "--days", "5"); code != 0 {
		t.Errorf("check via env: %d %q", code, stdout)
	}
}
