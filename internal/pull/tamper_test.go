package pull

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/store"
)

// TestTampered changes objects in the store as someone with write access
// to it could, and checks that the node refuses and keeps serving what it
// had.
func TestTampered(t *testing.T) {
	testCases := []struct {
		desc   string
		tamper func(t *testing.T, w *world, old, cur *bundle.Bundle, oldPointer []byte)
		want   error
	}{
		{
			desc: "replaced key",
			tamper: func(t *testing.T, w *world, old, cur *bundle.Bundle, _ []byte) {
				// A key the attacker chose, encrypted to the nodes'
				// (public) recipients.
				iss, err := devca.SelfSigned(devca.Leaf{Domains: []string{name}})
				if err != nil {
					t.Fatal(err)
				}
				enc, err := store.Encrypt(iss.Key, w.recipients)
				if err != nil {
					t.Fatal(err)
				}
				put(t, w, store.FileKey(name, cur.Manifest.ID, store.KeyObject(store.RecipientsID(w.recipients))), enc)
			},
			want: bundle.ErrHashMismatch,
		},
		{
			desc: "edited manifest",
			tamper: func(t *testing.T, w *world, old, cur *bundle.Bundle, _ []byte) {
				data, err := cur.ReadFile(bundle.ManifestFile)
				if err != nil {
					t.Fatal(err)
				}
				put(t, w, store.FileKey(name, cur.Manifest.ID, bundle.ManifestFile), []byte(strings.Replace(string(data), `"source": "import"`, `"source": "acme"`, 1)))
			},
			want: bundle.ErrHashMismatch,
		},
		{
			desc: "edited certificate",
			tamper: func(t *testing.T, w *world, old, cur *bundle.Bundle, _ []byte) {
				data, err := old.ReadFile(bundle.CertFile)
				if err != nil {
					t.Fatal(err)
				}
				put(t, w, store.FileKey(name, cur.Manifest.ID, bundle.CertFile), data)
			},
			want: bundle.ErrHashMismatch,
		},
		{
			desc: "older current",
			tamper: func(t *testing.T, w *world, old, cur *bundle.Bundle, oldPointer []byte) {
				put(t, w, store.CurrentKey(name), oldPointer)
			},
			want: install.ErrDowngrade,
		},
		{
			desc: "pointer by another key",
			tamper: func(t *testing.T, w *world, old, cur *bundle.Bundle, _ []byte) {
				w.signer = otherSigner(t)
				p := w.publisher()
				data, err := (&store.Pointer{Name: name, ID: old.Manifest.ID, NotBefore: time.Now(), ManifestSHA256: strings.Repeat("0", 64), Key: "privkey.x.pem.age"}).Sign(p.Signer)
				if err != nil {
					t.Fatal(err)
				}
				put(t, w, store.CurrentKey(name), data)
			},
			want: bundle.ErrUntrustedKey,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			backends(t, func(t *testing.T, w *world) {
				ctx := context.Background()
				b1 := w.issue(time.Now().Add(-2 * time.Hour))
				w.publish(b1)
				o, err := w.st.Get(ctx, store.CurrentKey(name), "", store.MaxObject)
				if err != nil {
					t.Fatal(err)
				}
				p := w.node(w.nodeIdentity)
				pullOne(t, p)
				before := b1.Manifest.ID
				b2 := w.issue(time.Now().Add(-time.Hour))
				if tc.desc != "older current" {
					w.publish(b2)
				} else {
					w.publish(b2)
					pullOne(t, p)
					before = b2.Manifest.ID
				}
				tc.tamper(t, w, b1, b2, o.Data)
				r := pullOne(t, p)
				if r.Result.Result != install.Refused || !errors.Is(r.Err, tc.want) {
					t.Fatalf("pull: %s %v, want refused with %v", r.Result.Result, r.Err, tc.want)
				}
				if got := live(t, p); got != before {
					t.Fatalf("live %s after a refused pull, want %s", got, before)
				}
			})
		})
	}
}

func put(t *testing.T, w *world, key string, data []byte) {
	t.Helper()
	if _, err := w.st.Put(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

func otherSigner(t *testing.T) *bundle.Signer {
	s, err := bundle.LoadOrCreateSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStoreDown: a node whose store is gone keeps what it has and says
// the store is unreachable.
func TestStoreDown(t *testing.T) {
	srv := startServer(t)
	w := newWorld(t, srv.Config("certs"))
	w.publish(w.issue(time.Now().Add(-time.Hour)))
	p := w.node(w.nodeIdentity)
	pullOne(t, p)
	id := live(t, p)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := p.Pull(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Result.Result != install.Failed || !errors.Is(rs[0].Err, ErrUnreachable) {
		t.Fatalf("pull with the store down: %s %v", rs[0].Result.Result, rs[0].Err)
	}
	if live(t, p) != id || id == "" {
		t.Fatalf("live changed to %q", live(t, p))
	}
}

// TestRefusedNotDownloadedAgain: after a tampered bundle is refused, the
// next poll makes one conditional request, reports refused again without
// downloading, and a new publish is installed.
func TestRefusedNotDownloadedAgain(t *testing.T) {
	backends(t, func(t *testing.T, w *world) {
		w.publish(w.issue(time.Now().Add(-3 * time.Hour)))
		p := w.node(w.nodeIdentity)
		pullOne(t, p)
		b2 := w.issue(time.Now().Add(-2 * time.Hour))
		w.publish(b2)
		put(t, w, store.FileKey(name, b2.Manifest.ID, bundle.CertFile), []byte("tampered"))
		if r := pullOne(t, p); r.Result.Result != install.Refused || !errors.Is(r.Err, bundle.ErrHashMismatch) {
			t.Fatalf("first pull: %s %v", r.Result.Result, r.Err)
		}
		c := &counting{Store: w.st}
		p.Store = c
		r := pullOne(t, p)
		if r.Result.Result != install.Refused || !errors.Is(r.Err, ErrRefusedBefore) || !strings.Contains(r.Err.Error(), "does not match") {
			t.Fatalf("second pull: %s %v, want refused before", r.Result.Result, r.Err)
		}
		if len(c.calls) != 1 || c.calls[0] != "get "+store.CurrentKey(name) {
			t.Fatalf("requests: %q, want one get of current", c.calls)
		}
		b3 := w.issue(time.Now().Add(-time.Hour))
		w.publish(b3)
		if r := pullOne(t, p); r.Result.Result != install.Installed || live(t, p) != b3.Manifest.ID {
			t.Fatalf("pull after a new publish: %s %v", r.Result.Result, r.Err)
		}
	})
}
