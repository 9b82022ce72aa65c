package install

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/bundle"
)

// contents is b as a bundle stream brings it: file name to bytes.
func (b *testBundle) contents(t *testing.T) map[string][]byte {
	t.Helper()
	c := bundle.Contents(b.mat)
	data, err := b.m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	c[bundle.ManifestFile] = data
	return c
}

// TestInstallFromContents: a bundle handed in memory (certnode install
// --stdin) is installed like one from incoming, with incoming untouched;
// the same again is unchanged.
func TestInstallFromContents(t *testing.T) {
	n := newNode(t, nodeOptions{})
	b := n.bundle(name, bundleOptions{noPush: true})
	r := n.installOne(name, Options{ID: b.id, Contents: b.contents(t)}, Installed)
	if r.ID != b.id || r.Fingerprint != b.m.Fingerprint {
		t.Errorf("result %+v", r)
	}
	n.wantLive(name, b.id)
	key, err := os.Stat(filepath.Join(n.root, "archive", name, b.id, bundle.KeyFile))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("installed key: %v %v", key, err)
	}
	if n.exists(filepath.Join(n.incoming, name)) {
		t.Errorf("incoming/%s was created", name)
	}
	n.installOne(name, Options{ID: b.id, Contents: b.contents(t)}, Unchanged)

	// A dry run of a newer one says it would install it and changes
	// nothing.
	b2 := n.bundle(name, bundleOptions{noPush: true})
	n.installOne(name, Options{ID: b2.id, Contents: b2.contents(t), DryRun: true}, WouldInstall)
	n.wantLive(name, b.id)
	if n.exists(filepath.Join(n.root, "archive", name, b2.id)) {
		t.Error("a dry run wrote the bundle into the archive")
	}
	n.installOne(name, Options{ID: b2.id, Contents: b2.contents(t)}, Installed)
	n.wantLive(name, b2.id)
}

// TestContentsRefusedBeforeWriting: a stream bundle that does not verify
// is refused before anything is written on the node.
func TestContentsRefusedBeforeWriting(t *testing.T) {
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc   string
		mangle func(b *testBundle, c map[string][]byte)
		signer *bundle.Signer
		id     string
		want   string
	}{
		{desc: "untrusted signer", signer: bundle.NewSigner(other), want: "untrusted key"},
		{desc: "key swapped", mangle: func(_ *testBundle, c map[string][]byte) {
			c[bundle.KeyFile] = append([]byte{}, c[bundle.KeyFile]...)
			c[bundle.KeyFile][40] ^= 1
		}, want: "privkey.pem"},
		{desc: "other id asked", id: "0123456789abcdef", want: "holds bundle"},
		{desc: "manifest missing", mangle: func(_ *testBundle, c map[string][]byte) {
			delete(c, bundle.ManifestFile)
		}, want: "manifest"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			n := newNode(t, nodeOptions{})
			b := n.bundle(name, bundleOptions{noPush: true, signer: tc.signer})
			c := b.contents(t)
			if tc.mangle != nil {
				tc.mangle(b, c)
			}
			id := b.id
			if tc.id != "" {
				id = tc.id
			}
			r := n.installOne(name, Options{ID: id, Contents: c}, Refused)
			if !strings.Contains(r.Error, tc.want) {
				t.Errorf("error %q, want it to mention %q", r.Error, tc.want)
			}
			for _, d := range []string{"archive", "live"} {
				if n.exists(filepath.Join(n.root, d, name)) {
					t.Errorf("%s/%s was written for a refused bundle", d, name)
				}
			}
		})
	}
}
