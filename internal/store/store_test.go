package store_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/teststore"
)

// conformance runs the Store contract against one backend.
func conformance(t *testing.T, st store.Store) {
	ctx := context.Background()
	t.Run("create-only", func(t *testing.T) {
		tag, err := st.Create(ctx, "a/1/x", []byte("one"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Create(ctx, "a/1/x", []byte("two")); !errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("second create: %v, want ErrPrecondition", err)
		}
		o, err := st.Get(ctx, "a/1/x", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if string(o.Data) != "one" || o.ETag != tag {
			t.Fatalf("got %q etag %q, want one etag %q", o.Data, o.ETag, tag)
		}
	})
	t.Run("conditional-get", func(t *testing.T) {
		o, err := st.Get(ctx, "a/1/x", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "a/1/x", o.ETag, 100); !errors.Is(err, store.ErrNotModified) {
			t.Fatalf("get with its etag: %v, want ErrNotModified", err)
		}
		if _, err := st.Get(ctx, "a/1/x", `"0123"`, 100); err != nil {
			t.Fatalf("get with another etag: %v", err)
		}
		if _, err := st.Get(ctx, "a/1/x", "", 2); !errors.Is(err, store.ErrTooLarge) {
			t.Fatalf("get over limit: %v, want ErrTooLarge", err)
		}
		if _, err := st.Get(ctx, "a/none", "", 100); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("get missing: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("replace", func(t *testing.T) {
		tag, err := st.Create(ctx, "a/current", []byte("v1"))
		if err != nil {
			t.Fatal(err)
		}
		tag2, err := st.Replace(ctx, "a/current", []byte("v2"), tag)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Replace(ctx, "a/current", []byte("v3"), tag); !errors.Is(err, store.ErrPrecondition) {
			t.Fatalf("replace on a stale etag: %v, want ErrPrecondition", err)
		}
		o, err := st.Get(ctx, "a/current", "", 100)
		if err != nil || string(o.Data) != "v2" || o.ETag != tag2 {
			t.Fatalf("after replace: %v %q %q, want v2 %q", err, o.Data, o.ETag, tag2)
		}
		if _, err := st.Replace(ctx, "a/missing", []byte("v"), tag); err == nil {
			t.Fatal("replace of a missing object succeeded")
		}
	})
	t.Run("put-list", func(t *testing.T) {
		for _, k := range []string{"a/nodes/n1", "a/nodes/n2"} {
			if _, err := st.Put(ctx, k, []byte("r")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.Put(ctx, "a/nodes/n1", []byte("r2")); err != nil {
			t.Fatal(err)
		}
		keys, err := st.List(ctx, "a/nodes/")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(keys, []string{"a/nodes/n1", "a/nodes/n2"}) {
			t.Fatalf("list: %q", keys)
		}
		all, err := st.List(ctx, "a/")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(all, "a/1/x") || !slices.Contains(all, "a/current") {
			t.Fatalf("list a/: %q", all)
		}
	})
	t.Run("one-creator-wins", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, refused := 0, 0
		for i := range 10 {
			wg.Go(func() {
				_, err := st.Create(ctx, "a/lease", []byte{byte('0' + i)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, store.ErrPrecondition):
					refused++
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins != 1 || refused != 9 {
			t.Fatalf("%d creators won, %d refused; want 1 and 9", wins, refused)
		}
	})
	t.Run("bad-keys", func(t *testing.T) {
		for _, k := range []string{"", "../x", "a//b", "a/./b", "a/b c"} {
			if _, err := st.Put(ctx, k, nil); err == nil {
				t.Errorf("put %q succeeded", k)
			}
		}
	})
}

func TestDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st, err := store.Open(context.Background(), &store.Config{URL: "file://" + dir})
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, st)
	fi, err := os.Stat(filepath.Join(dir, "a", "1", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("object mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestS3(t *testing.T) {
	srv := teststore.Start(t)
	conformance(t, srv.Open(t, "pfx"))
	// The prefix is where the objects went.
	if _, err := os.Stat(filepath.Join(srv.Dir, teststore.Bucket, "pfx", "a", "current")); err != nil {
		t.Fatalf("object not under the prefix: %v", err)
	}
}
