package bundle_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func signedManifest(t *testing.T, signer *bundle.Signer) *bundle.Manifest {
	t.Helper()
	is := issue(t, newCA(t), devca.Leaf{Domains: []string{"example.com"}})
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.NewManifest("example.com", mat, bundle.SourceImport, time.Now())
	if err := signer.Sign(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// roundTrip is what a node reads: the manifest as written to disk.
func roundTrip(t *testing.T, m *bundle.Manifest) *bundle.Manifest {
	t.Helper()
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := bundle.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func TestSeveralSignatures(t *testing.T) {
	oldPub, oldKey := newKey(t)
	newPub, newKeyPriv := newKey(t)
	otherPub, _ := newKey(t)

	// One key: the manifest is as it always was (no signatures list).
	single := roundTrip(t, signedManifest(t, bundle.NewSigner(oldKey)))
	if len(single.Signatures) != 0 || single.SigningKey == "" {
		t.Fatalf("single-key manifest: %+v", single)
	}
	data, _ := single.Marshal()
	if bytes.Contains(data, []byte(`"signatures"`)) {
		t.Error("a single-key manifest has a signatures field")
	}

	both := roundTrip(t, signedManifest(t, bundle.NewSigner(newKeyPriv, oldKey)))
	for _, tc := range []struct {
		name    string
		m       *bundle.Manifest
		trusted []ed25519.PublicKey
		want    error
	}{
		{"old key only, single", single, []ed25519.PublicKey{oldPub}, nil},
		{"new key only, single", single, []ed25519.PublicKey{newPub}, bundle.ErrUntrustedKey},
		{"old node, both signed", both, []ed25519.PublicKey{oldPub}, nil},
		{"new node, both signed", both, []ed25519.PublicKey{newPub}, nil},
		{"node trusting both", both, []ed25519.PublicKey{oldPub, newPub}, nil},
		{"another key", both, []ed25519.PublicKey{otherPub}, bundle.ErrUntrustedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.VerifySignature(tc.trusted)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}

	// A second signature that does not verify is refused by a node that
	// trusts its key, even though the first verifies.
	forged := roundTrip(t, both)
	forged.Signatures[0].Signature = forged.Signature
	if err := forged.VerifySignature([]ed25519.PublicKey{oldPub, newPub}); !errors.Is(err, bundle.ErrBadSignature) {
		t.Errorf("forged second signature: %v, want ErrBadSignature", err)
	}
	// Every signature covers the manifest: a changed field breaks both.
	edited := roundTrip(t, both)
	edited.Domains = []string{"evil.example"}
	for _, k := range []ed25519.PublicKey{oldPub, newPub} {
		if err := edited.VerifySignature([]ed25519.PublicKey{k}); !errors.Is(err, bundle.ErrBadSignature) {
			t.Errorf("edited manifest: %v, want ErrBadSignature", err)
		}
	}
	// A signature is not moved to another key's name.
	swapped := roundTrip(t, both)
	swapped.Signature, swapped.Signatures[0].Signature = swapped.Signatures[0].Signature, swapped.Signature
	if err := swapped.VerifySignature([]ed25519.PublicKey{newPub}); !errors.Is(err, bundle.ErrBadSignature) {
		t.Errorf("swapped signatures: %v, want ErrBadSignature", err)
	}

	// Adding a signature keeps the existing one valid.
	added := roundTrip(t, single)
	if changed, err := bundle.NewSigner(newKeyPriv, oldKey).AddSignatures(added); err != nil || !changed {
		t.Fatalf("AddSignatures = %v, %v", changed, err)
	}
	if changed, _ := bundle.NewSigner(newKeyPriv, oldKey).AddSignatures(added); changed {
		t.Error("AddSignatures twice changed the manifest again")
	}
	added = roundTrip(t, added)
	if added.SigningKey != single.SigningKey || added.Signature != single.Signature || len(added.Signatures) != 1 {
		t.Errorf("re-signed manifest: %+v", added)
	}
	for _, k := range []ed25519.PublicKey{oldPub, newPub} {
		if err := added.VerifySignature([]ed25519.PublicKey{k}); err != nil {
			t.Errorf("re-signed manifest with one key trusted: %v", err)
		}
	}

	// No more than MaxSignatures.
	many := roundTrip(t, single)
	for range bundle.MaxSignatures {
		many.Signatures = append(many.Signatures, many.Signatures...)
		many.Signatures = append(many.Signatures, bundle.Signature{SigningKey: single.SigningKey, Signature: single.Signature})
	}
	if err := many.VerifySignature([]ed25519.PublicKey{oldPub}); !errors.Is(err, bundle.ErrBadSignature) || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("too many signatures: %v", err)
	}
}

func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := bundle.RotateKey(dir); !errors.Is(err, bundle.ErrNoSigningKey) {
		t.Fatalf("rotate without a key: %v", err)
	}
	first, err := bundle.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := bundle.RotateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := rotated.PublicKeys()
	if len(keys) != 2 || keys[1] != first.PublicKey() || keys[0] == first.PublicKey() {
		t.Fatalf("after rotate: keys %v, first %s", keys, first.PublicKey())
	}
	for file, mode := range map[string]os.FileMode{
		bundle.SigningKeyFile: 0o600, bundle.OldSigningKeyFile: 0o600,
		"signing.pub": 0o644, "signing.old.pub": 0o644,
	} {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, %v; want %v", file, fi, err, mode)
		}
	}
	if pub, _ := os.ReadFile(filepath.Join(dir, "signing.pub")); strings.TrimSpace(string(pub)) != keys[0] {
		t.Errorf("signing.pub %q, want the new key %s", pub, keys[0])
	}
	loaded, err := bundle.LoadSigner(dir)
	if err != nil || strings.Join(loaded.PublicKeys(), " ") != strings.Join(keys, " ") {
		t.Fatalf("reload during the rotation: %v, %v", loaded.PublicKeys(), err)
	}
	if _, err := bundle.RotateKey(dir); !errors.Is(err, bundle.ErrRotating) || !strings.Contains(err.Error(), "key retire") {
		t.Errorf("second rotate: %v, want ErrRotating naming key retire", err)
	}

	old, err := bundle.RetireKey(dir)
	if err != nil || old != first.PublicKey() {
		t.Fatalf("retire = %q, %v", old, err)
	}
	for _, f := range []string{bundle.OldSigningKeyFile, "signing.old.pub"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after retire: %v", f, err)
		}
	}
	if loaded, _ := bundle.LoadSigner(dir); len(loaded.PublicKeys()) != 1 || loaded.PublicKey() != keys[0] {
		t.Errorf("after retire: %v", loaded.PublicKeys())
	}
	if old, err := bundle.RetireKey(dir); old != "" || err != nil {
		t.Errorf("retire with nothing to retire = %q, %v", old, err)
	}

	// An old key readable by others is refused, as the current one is.
	if _, err := bundle.RotateKey(dir); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, bundle.OldSigningKeyFile), 0o640)
	if _, err := bundle.LoadSigner(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable old key: %v", err)
	}
}

func TestStoreResign(t *testing.T) {
	ca := newCA(t)
	st, signer := newStore(t)
	is := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	mat, _ := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	b, _, err := st.Add("example.com", mat, bundle.AddOptions{Domains: []string{"example.com"}, Source: bundle.SourceImport, Signer: signer, Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, f := range bundle.Files {
		files[f], _ = os.ReadFile(filepath.Join(b.Dir, f))
	}
	rotated, err := bundle.RotateKey(filepath.Dir(st.Dir))
	if err != nil {
		t.Fatal(err)
	}
	rb, changed, err := st.Resign("example.com", rotated)
	if err != nil || !changed || rb.Manifest.ID != b.Manifest.ID {
		t.Fatalf("Resign = %v, %v, %v", rb, changed, err)
	}
	if _, changed, _ := st.Resign("example.com", rotated); changed {
		t.Error("second Resign changed the manifest")
	}
	reopened, err := bundle.Open(b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	newPub, _ := bundle.ParsePublicKey(rotated.PublicKey())
	if _, err := reopened.Verify([]ed25519.PublicKey{newPub}, time.Now()); err != nil {
		t.Errorf("re-signed bundle with the new key trusted: %v", err)
	}
	oldPub, _ := bundle.ParsePublicKey(signer.PublicKey())
	if _, err := reopened.Verify([]ed25519.PublicKey{oldPub}, time.Now()); err != nil {
		t.Errorf("re-signed bundle with the old key trusted: %v", err)
	}
	for f, want := range files {
		if got, _ := os.ReadFile(filepath.Join(b.Dir, f)); !bytes.Equal(got, want) {
			t.Errorf("%s changed by Resign", f)
		}
	}
	if fi, err := os.Stat(filepath.Join(b.Dir, bundle.ManifestFile)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("manifest after Resign: %v, %v", fi, err)
	}
	if _, _, err := st.Resign("other.com", rotated); !errors.Is(err, bundle.ErrNoBundle) {
		t.Errorf("Resign of nothing: %v", err)
	}
}
