package pull

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/store"
)

func TestPublishAndPull(t *testing.T) {
	backends(t, func(t *testing.T, w *world) {
		ctx := context.Background()
		b1 := w.issue(time.Now().Add(-2 * time.Hour))
		if r := w.publish(b1); r.Result != Published {
			t.Fatalf("first publish: %s", r.Result)
		}
		if r := w.publish(b1); r.Result != Unchanged {
			t.Fatalf("publish again: %s, want unchanged", r.Result)
		}
		o, err := w.st.Get(ctx, store.CurrentKey(name), "", store.MaxObject)
		if err != nil {
			t.Fatal(err)
		}
		ptr, err := store.ParsePointer(o.Data, name, w.trusted(t))
		if err != nil || ptr.ID != b1.Manifest.ID {
			t.Fatalf("current: %v %+v", err, ptr)
		}

		// One node decrypts with its age identity, one with its SSH host key.
		for _, p := range []*Puller{w.node(w.nodeIdentity), w.node(w.sshIdentity)} {
			if r := pullOne(t, p); r.Result.Result != install.Installed || r.Err != nil {
				t.Fatalf("pull into an empty root: %s %v", r.Result.Result, r.Err)
			}
			if got := live(t, p); got != b1.Manifest.ID {
				t.Fatalf("live %s, want %s", got, b1.Manifest.ID)
			}
			if r := pullOne(t, p); !r.NotModified || r.Result.Result != install.Unchanged {
				t.Fatalf("second pull: %+v, want not modified", r)
			}
		}

		p := w.node(w.nodeIdentity)
		pullOne(t, p)
		b2 := w.issue(time.Now().Add(-time.Hour))
		if r := w.publish(b2); r.Result != Published {
			t.Fatalf("publish v2: %s", r.Result)
		}
		if r := pullOne(t, p); r.Result.Result != install.Installed || r.Previous != b1.Manifest.ID {
			t.Fatalf("pull v2: %+v", r)
		}
		if live(t, p) != b2.Manifest.ID {
			t.Fatal("node did not switch to v2")
		}
		reps, err := Reports(ctx, w.st, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != 3 {
			t.Fatalf("%d node reports, want 3", len(reps))
		}

		// An older bundle never moves current back.
		if _, err := w.publisher().Publish(ctx, b1, PublishOptions{}); !errors.Is(err, ErrStoreNewer) {
			t.Fatalf("publish an older bundle: %v, want ErrStoreNewer", err)
		}
		// New recipients: the same bundle gets a new key object.
		w.recipients = w.recipients[:1]
		r := w.publish(b2)
		if r.Result != Published || r.Key == store.KeyObject(store.RecipientsID(w.recipients[:0])) {
			t.Fatalf("publish to new recipients: %+v", r)
		}
		if r := pullOne(t, p); r.Result.Result != install.Unchanged || r.NotModified {
			t.Fatalf("pull after re-encryption: %+v", r)
		}
		// A fenced publish on a stale view moves nothing.
		if _, err := w.publisher().Publish(ctx, w.issue(time.Now().Add(-time.Minute)), PublishOptions{Fence: FenceNone}); !errors.Is(err, ErrCurrentMoved) {
			t.Fatalf("fenced publish: %v, want ErrCurrentMoved", err)
		}
		assertNoClearKey(t, w.st)
	})
}

// assertNoClearKey reads every object of the store and fails on any
// private key in clear.
func assertNoClearKey(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	keys, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 6 {
		t.Fatalf("only %d objects in the store: %q", len(keys), keys)
	}
	for _, k := range keys {
		o, err := st.Get(ctx, k, "", 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(o.Data, []byte("PRIVATE KEY")) {
			t.Fatalf("object %s holds a private key in clear", k)
		}
	}
}

func (w *world) trusted(t *testing.T) []ed25519PublicKey {
	k, err := bundle.ParsePublicKey(w.signer.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return []ed25519PublicKey{k}
}

// TestBoot: before the service runs, a normal pull's reload and TLS check
// fail and roll back; a boot pull runs the config test only.
func TestBoot(t *testing.T) {
	w := newWorld(t, nil2file(t))
	b := w.issue(time.Now().Add(-time.Hour))
	w.publish(b)
	down := "defaults:\n  test: [/bin/true]\n  reload: [/bin/false]\n  verify: [\"127.0.0.1:1\"]\n  verify_timeout: 1s\n"
	p := w.nodeWith(w.nodeIdentity, down)
	if r := pullOne(t, p); r.OK() || live(t, p) == b.Manifest.ID {
		t.Fatalf("pull with the service down: %s, live %q: want a failure and nothing live", r.Result.Result, live(t, p))
	}
	p = w.nodeWith(w.nodeIdentity, down)
	p.Boot = true
	if r := pullOne(t, p); r.Result.Result != install.Installed {
		t.Fatalf("boot pull: %s %v, want installed", r.Result.Result, r.Err)
	}
	if live(t, p) != b.Manifest.ID {
		t.Fatal("boot pull did not install")
	}
	// A failing config test still refuses at boot.
	p = w.nodeWith(w.nodeIdentity, "defaults:\n  test: [/bin/false]\n")
	p.Boot = true
	if r := pullOne(t, p); r.OK() {
		t.Fatalf("boot pull with a failing config test: %s", r.Result.Result)
	}
}

// counting counts the calls to a real store.
type counting struct {
	store.Store
	mu    sync.Mutex
	calls []string
}

func (c *counting) note(op, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, op+" "+key)
}

func (c *counting) Get(ctx context.Context, key, inm string, limit int64) (*store.Object, error) {
	c.note("get", key)
	return c.Store.Get(ctx, key, inm, limit)
}

func (c *counting) Put(ctx context.Context, key string, data []byte) (string, error) {
	c.note("put", key)
	return c.Store.Put(ctx, key, data)
}

func (c *counting) Create(ctx context.Context, key string, data []byte) (string, error) {
	c.note("create", key)
	return c.Store.Create(ctx, key, data)
}

func (c *counting) Replace(ctx context.Context, key string, data []byte, etag string) (string, error) {
	c.note("replace", key)
	return c.Store.Replace(ctx, key, data, etag)
}

func (c *counting) List(ctx context.Context, prefix string) ([]string, error) {
	c.note("list", prefix)
	return c.Store.List(ctx, prefix)
}

// TestOneRequestWhenUnchanged: a pull with nothing new makes exactly one
// request, the conditional GET of current.
func TestOneRequestWhenUnchanged(t *testing.T) {
	backends(t, func(t *testing.T, w *world) {
		w.publish(w.issue(time.Now().Add(-time.Hour)))
		p := w.node(w.nodeIdentity)
		pullOne(t, p)
		c := &counting{Store: w.st}
		p.Store = c
		if r := pullOne(t, p); !r.NotModified {
			t.Fatalf("second pull: %+v", r)
		}
		if len(c.calls) != 1 || c.calls[0] != "get "+store.CurrentKey(name) {
			t.Fatalf("requests: %q, want one get of current", c.calls)
		}
	})
}
