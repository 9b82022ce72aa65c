package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/bundle"
)

// TestKeyRotation rotates the signing key of a real fleet the documented
// way: node-1 keeps trusting only the old key, node-2 trusts both, and
// node-3, rebuilt during the rotation, trusts only the new key. Every
// node keeps installing until the old key is retired; after that only the
// old-key node refuses, and takes bundles again once it trusts the new key.
func TestKeyRotation(t *testing.T) {
	w := newWorld(t, 3)
	n1, n2, n3 := w.fleet.Hosts[0], w.fleet.Hosts[1], w.fleet.Hosts[2]
	fpA := w.importNew()
	if code, res, _ := w.pushJSON("--hosts", "node-1,node-2"); code != 0 || res["node-1"] != "installed" || res["node-2"] != "installed" {
		t.Fatalf("first push: %d %v", code, res)
	}
	before, err := w.store().Current(certName)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := before.Manifest.SigningKey
	files := map[string][]byte{}
	for _, f := range bundle.Files {
		files[f], _ = os.ReadFile(filepath.Join(before.Dir, f))
	}

	code, stdout, _ := w.certpush("key", "rotate")
	if code != 0 || !strings.Contains(stdout, "re-signed") {
		t.Fatalf("key rotate: %d\n%s", code, stdout)
	}
	pub, err := os.ReadFile(filepath.Join(w.stateDir, "signing.pub"))
	if err != nil {
		t.Fatal(err)
	}
	newKey := strings.TrimSpace(string(pub))
	if newKey == oldKey || !strings.Contains(stdout, newKey) || !strings.Contains(stdout, oldKey) {
		t.Fatalf("rotate output names neither key pair right (old %s, new %s):\n%s", oldKey, newKey, stdout)
	}
	// The current bundle: same id and files, both signatures.
	after, err := w.store().Current(certName)
	if err != nil {
		t.Fatal(err)
	}
	if after.Manifest.ID != before.Manifest.ID || strings.Join(after.Manifest.SigningKeys(), " ") != oldKey+" "+newKey {
		t.Errorf("after rotate: id %s (was %s), signed by %v", after.Manifest.ID, before.Manifest.ID, after.Manifest.SigningKeys())
	}
	for f, want := range files {
		if got, _ := os.ReadFile(filepath.Join(after.Dir, f)); string(got) != string(want) {
			t.Errorf("rotate changed %s", f)
		}
	}
	if code, stdout, _ := w.certpush("key", "show"); code != 0 || !strings.Contains(stdout, "old key:") || strings.Contains(stdout, "not by") {
		t.Errorf("key show during the rotation: %d\n%s", code, stdout)
	}
	if code, _, stderr := w.certpush("key", "rotate"); code != 1 || !strings.Contains(stderr, "key retire") {
		t.Errorf("second rotate: %d %s; want 1 naming key retire", code, stderr)
	}

	// Step 2 of the rotation on two nodes; node-3 is rebuilt trusting the
	// new key only and gets the re-signed current bundle; the others have
	// it already.
	if err := n2.SetTrustedKeys(oldKey, newKey); err != nil {
		t.Fatal(err)
	}
	if err := n3.SetTrustedKeys(newKey); err != nil {
		t.Fatal(err)
	}
	if code, res, _ := w.pushJSON(); code != 0 || res["node-1"] != "unchanged" || res["node-2"] != "unchanged" || res["node-3"] != "installed" {
		t.Fatalf("push after rotate: %d %v", code, res)
	}
	w.wantServed(fpA, fpA, fpA)

	// A new certificate during the rotation reaches all three.
	fpB := w.importNew()
	if code, res, _ := w.pushJSON(); code != 0 || res["node-1"] != "installed" || res["node-2"] != "installed" || res["node-3"] != "installed" {
		t.Fatalf("push of a new bundle during the rotation: %d %v", code, res)
	}
	w.wantServed(fpB, fpB, fpB)

	if code, stdout, _ := w.certpush("key", "retire"); code != 0 || !strings.Contains(stdout, oldKey) {
		t.Fatalf("key retire: %d\n%s", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(w.stateDir, bundle.OldSigningKeyFile)); !os.IsNotExist(err) {
		t.Errorf("old key still there after retire: %v", err)
	}
	if code, _, stderr := w.certpush("key", "retire"); code != 1 || !strings.Contains(stderr, "no key rotation") {
		t.Errorf("retire again: %d %s", code, stderr)
	}

	// After the retirement only the new key signs: the node that still
	// trusts only the old key refuses, and says why.
	fpC := w.importNew()
	code, res, errs := w.pushJSON()
	if code != 1 || res["node-1"] != "failed" || !strings.Contains(errs["node-1"], "bundle is signed by an untrusted key ("+newKey+")") || res["node-2"] != "installed" || res["node-3"] != "installed" {
		t.Fatalf("push after retire: %d %v %v", code, res, errs)
	}
	w.wantServed(fpB, fpC, fpC)
	if err := n1.SetTrustedKeys(newKey); err != nil {
		t.Fatal(err)
	}
	if code, res, _ := w.pushJSON(); code != 0 || res["node-1"] != "installed" {
		t.Fatalf("push once node-1 trusts the new key: %d %v", code, res)
	}
	w.wantServed(fpC, fpC, fpC)
}
