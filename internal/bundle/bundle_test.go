package bundle_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

func newCA(t *testing.T) *devca.CA {
	t.Helper()
	ca, err := devca.New("Test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *devca.CA, l devca.Leaf) *devca.Issued {
	t.Helper()
	is, err := ca.Issue(l)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func TestCovers(t *testing.T) {
	testCases := []struct {
		desc string
		sans []string
		name string
		want bool
	}{
		{"exact", []string{"example.com"}, "example.com", true},
		{"case and trailing dot", []string{"Example.COM"}, "example.com.", true},
		{"wildcard one label", []string{"*.example.com"}, "a.example.com", true},
		{"wildcard not apex", []string{"*.example.com"}, "example.com", false},
		{"wildcard not two labels", []string{"*.example.com"}, "a.b.example.com", false},
		{"wildcard requested, same wildcard", []string{"*.example.com"}, "*.example.com", true},
		{"wildcard requested, names only", []string{"a.example.com"}, "*.example.com", false},
		{"other domain", []string{"*.example.com"}, "a.example.org", false},
		{"suffix trick", []string{"*.example.com"}, "aexample.com", false},
		{"empty name", []string{"example.com"}, "", false},
		{"partial wildcard not honoured", []string{"a*.example.com"}, "ab.example.com", false},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := bundle.Covers(tc.sans, tc.name); got != tc.want {
				t.Errorf("Covers(%v, %q) = %v, want %v", tc.sans, tc.name, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	now := time.Now()
	good := issue(t, ca, devca.Leaf{Domains: []string{"example.com", "*.example.com"}})
	otherLeaf := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	expired := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	testCases := []struct {
		desc    string
		cert    []byte
		chain   []byte
		key     []byte
		domains []string
		want    error
	}{
		{"valid", good.Cert, good.Chain, good.Key, []string{"example.com", "*.example.com", "www.example.com"}, nil},
		{"fullchain in cert", append(append([]byte{}, good.Cert...), good.Chain...), nil, good.Key, []string{"example.com"}, nil},
		{"key mismatch", good.Cert, good.Chain, otherLeaf.Key, nil, bundle.ErrKeyMismatch},
		{"chain from another CA", good.Cert, devca.PEM(other.Intermediate), good.Key, nil, bundle.ErrChain},
		{"names not covered", good.Cert, good.Chain, good.Key, []string{"a.b.example.com"}, bundle.ErrNames},
		{"expired", expired.Cert, expired.Chain, expired.Key, nil, bundle.ErrExpired},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			m, err := bundle.ParseMaterial(tc.cert, tc.chain, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			err = m.Validate(tc.domains, now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseMaterialErrors(t *testing.T) {
	ca := newCA(t)
	good := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	testCases := []struct {
		desc  string
		cert  []byte
		chain []byte
		key   []byte
		want  string
	}{
		{"no cert", nil, nil, good.Key, "no CERTIFICATE block"},
		{"key in cert file", good.Key, nil, good.Key, `"PRIVATE KEY", want CERTIFICATE`},
		{"garbage after PEM", append(append([]byte{}, good.Cert...), "junk"...), nil, good.Key, "not PEM"},
		{"no key", good.Cert, nil, nil, "no PEM block"},
		{"two keys", good.Cert, nil, append(append([]byte{}, good.Key...), good.Key...), "more than one"},
		{"cert as key", good.Cert, nil, good.Cert, "want a private key"},
		{"oversize", make([]byte, bundle.MaxFileSize+1), nil, good.Key, "larger than"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := bundle.ParseMaterial(tc.cert, tc.chain, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseMaterial error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for _, name := range []string{"example.com", "a_b-c.1", "EXAMPLE"} {
		if err := bundle.ValidName(name); err != nil {
			t.Errorf("ValidName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "..", "../etc", "a/b", "a\x00b", ".hidden", "-flag", strings.Repeat("a", 201), "a b", "é"} {
		if err := bundle.ValidName(name); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", name)
		}
	}
}

func newStore(t *testing.T) (*bundle.Store, *bundle.Signer) {
	t.Helper()
	dir := t.TempDir()
	s, err := bundle.LoadOrCreateSigner(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	return &bundle.Store{Dir: filepath.Join(dir, "state", "bundles")}, s
}

func TestStoreAddAndVerify(t *testing.T) {
	ca := newCA(t)
	st, signer := newStore(t)
	is := issue(t, ca, devca.Leaf{Domains: []string{"example.com", "*.example.com"}})
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	opts := bundle.AddOptions{Domains: []string{"example.com"}, Source: bundle.SourceImport, Signer: signer, Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}}
	b, created, err := st.Add("example.com", mat, opts)
	if err != nil || !created {
		t.Fatalf("Add = %v, created %v", err, created)
	}
	if b.Manifest.ID != mat.ID() || b.Manifest.Source != bundle.SourceImport || b.Manifest.KeyType != "ec256" {
		t.Errorf("manifest = %+v", b.Manifest)
	}
	fi, err := os.Stat(filepath.Join(b.Dir, bundle.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	fi, err = os.Stat(filepath.Join(filepath.Dir(st.Dir), bundle.SigningKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	pub, err := bundle.ParsePublicKey(signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify([]ed25519.PublicKey{pub}, time.Now()); err != nil {
		t.Fatalf("Verify = %v", err)
	}

	// The same certificate again: nothing new.
	b2, created, err := st.Add("example.com", mat, opts)
	if err != nil || created || b2.Manifest.ID != b.Manifest.ID {
		t.Fatalf("second Add = %v, created %v", err, created)
	}
	cur, err := st.Current("example.com")
	if err != nil || cur.Manifest.ID != b.Manifest.ID {
		t.Fatalf("Current = %v, %v", cur, err)
	}
	if _, err := st.Current("other.com"); !errors.Is(err, bundle.ErrNoBundle) {
		t.Fatalf("Current(other) = %v, want ErrNoBundle", err)
	}

	// A key/cert mismatch never becomes a bundle.
	other := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	bad, err := bundle.ParseMaterial(is.Cert, is.Chain, other.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Add("example.com", bad, opts); !errors.Is(err, bundle.ErrKeyMismatch) {
		t.Fatalf("Add(mismatch) = %v, want ErrKeyMismatch", err)
	}
	entries, _ := os.ReadDir(filepath.Join(st.Dir, "example.com"))
	if len(entries) != 2 { // the bundle and "current"
		t.Errorf("store holds %d entries after a refused add, want 2", len(entries))
	}
}

func TestVerifyRefuses(t *testing.T) {
	ca := newCA(t)
	st, signer := newStore(t)
	is := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	mat, _ := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	b, _, err := st.Add("example.com", mat, bundle.AddOptions{Signer: signer, Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := bundle.ParsePublicKey(signer.PublicKey())
	otherPub, _, _ := ed25519.GenerateKey(nil)
	trusted := []ed25519.PublicKey{pub}

	copyBundle := func(t *testing.T, edit func(dir string)) *bundle.Bundle {
		t.Helper()
		dir := filepath.Join(t.TempDir(), b.Manifest.ID)
		os.MkdirAll(dir, 0o700)
		for _, f := range append(bundle.Files, bundle.ManifestFile) {
			data, err := os.ReadFile(filepath.Join(b.Dir, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, f), data, 0o600)
		}
		edit(dir)
		nb, err := bundle.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return nb
	}
	editManifest := func(f func(m *bundle.Manifest)) func(dir string) {
		return func(dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, bundle.ManifestFile))
			m, err := bundle.ParseManifest(data)
			if err != nil {
				t.Fatal(err)
			}
			f(m)
			out, _ := m.Marshal()
			os.WriteFile(filepath.Join(dir, bundle.ManifestFile), out, 0o600)
		}
	}
	testCases := []struct {
		desc    string
		edit    func(dir string)
		trusted []ed25519.PublicKey
		want    error
	}{
		{"untouched", func(string) {}, trusted, nil},
		{"tampered file", func(dir string) {
			os.WriteFile(filepath.Join(dir, bundle.ChainFile), []byte("x"), 0o600)
		}, trusted, bundle.ErrHashMismatch},
		{"manifest edited", editManifest(func(m *bundle.Manifest) { m.Domains = []string{"evil.com"} }), trusted, bundle.ErrBadSignature},
		{"unsigned", editManifest(func(m *bundle.Manifest) { m.Signature, m.SigningKey = "", "" }), trusted, bundle.ErrUnsigned},
		{"unsigned, no keys configured", editManifest(func(m *bundle.Manifest) { m.Signature, m.SigningKey = "", "" }), nil, nil},
		{"untrusted key", func(string) {}, []ed25519.PublicKey{otherPub}, bundle.ErrUntrustedKey},
		{"key swapped", func(dir string) {
			other := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
			os.WriteFile(filepath.Join(dir, bundle.KeyFile), other.Key, 0o600)
		}, trusted, bundle.ErrHashMismatch},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			nb := copyBundle(t, tc.edit)
			_, err := nb.Verify(tc.trusted, time.Now())
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}

	t.Run("symlinked file", func(t *testing.T) {
		nb := copyBundle(t, func(dir string) {
			os.Remove(filepath.Join(dir, bundle.KeyFile))
			os.Symlink(filepath.Join(b.Dir, bundle.KeyFile), filepath.Join(dir, bundle.KeyFile))
		})
		if _, err := nb.Verify(trusted, time.Now()); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("Verify = %v, want a symlink refusal", err)
		}
	})
}

func TestParseManifestStrict(t *testing.T) {
	testCases := []struct {
		desc string
		data string
		want string
	}{
		{"not json", "{", "parse manifest"},
		{"unknown field", `{"version":1,"evil":true}`, "unknown field"},
		{"wrong version", `{"version":2}`, "format version 2"},
		{"bad name", `{"version":1,"name":"../x","id":"0123456789abcdef"}`, "certificate name"},
		{"bad id", `{"version":1,"name":"a","id":"../../etc"}`, "bad bundle id"},
		{"missing files", `{"version":1,"name":"a","id":"0123456789abcdef","files":{}}`, "no entry for"},
		{"trailing data", `{"version":1} {}`, "trailing data"},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := bundle.ParseManifest([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseManifest = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestSignerReload(t *testing.T) {
	dir := t.TempDir()
	a, err := bundle.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bundle.LoadOrCreateSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.PublicKey() != b.PublicKey() {
		t.Fatal("second load made a new key")
	}
	os.Chmod(filepath.Join(dir, bundle.SigningKeyFile), 0o644)
	if _, err := bundle.LoadOrCreateSigner(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("loading a group-readable key = %v, want a refusal", err)
	}
}

func TestMaterialNeverPrintsItsKey(t *testing.T) {
	ca := newCA(t)
	is := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}})
	m, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("material", "m", m)
	body := strings.Split(strings.TrimSpace(string(m.KeyPEM)), "\n")[1]
	for _, out := range []string{fmt.Sprint(m), fmt.Sprintf("%v %+v %#v %s", m, m, m, m), logged.String()} {
		if strings.Contains(out, body) || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("key material printed: %s", out)
		}
	}
	if !strings.Contains(logged.String(), m.Fingerprint()) {
		t.Errorf("log line lacks the fingerprint: %s", logged.String())
	}
}

func TestStoreAddRefusesOlder(t *testing.T) {
	ca := newCA(t)
	st, signer := newStore(t)
	now := time.Now()
	add := func(notBefore time.Time, allowOlder bool) (*bundle.Bundle, error) {
		t.Helper()
		is := issue(t, ca, devca.Leaf{Domains: []string{"example.com"}, NotBefore: notBefore})
		mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := st.Add("example.com", mat, bundle.AddOptions{Source: bundle.SourceImport, Signer: signer, Now: now, AllowOlder: allowOlder, Anchor: bundle.Anchor{Roots: ca.Pool()}})
		return b, err
	}
	cur, err := add(now.Add(-time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = add(now.Add(-2*time.Hour), false)
	if _, ok := errors.AsType[*bundle.RefusedError](err); !ok || !errors.Is(err, bundle.ErrOlder) || !strings.Contains(err.Error(), cur.Manifest.ID) {
		t.Fatalf("older Add = %v, want a RefusedError wrapping ErrOlder naming %s", err, cur.Manifest.ID)
	}
	if got, _ := st.Current("example.com"); got.Manifest.ID != cur.Manifest.ID {
		t.Errorf("current changed to %s after a refused Add", got.Manifest.ID)
	}
	older, err := add(now.Add(-2*time.Hour), true)
	if err != nil {
		t.Fatalf("older Add with AllowOlder = %v", err)
	}
	if got, _ := st.Current("example.com"); got.Manifest.ID != older.Manifest.ID {
		t.Errorf("current %s, want the older bundle %s", got.Manifest.ID, older.Manifest.ID)
	}
}
