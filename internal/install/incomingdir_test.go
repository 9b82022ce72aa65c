package install

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

// nobody is a uid that is neither root nor the test's user.
const nobody = 65534

func TestOpenIncoming(t *testing.T) {
	testCases := []struct {
		desc     string
		root     bool // needs root (chown to another user)
		make     func(t *testing.T, dir string) string
		wantMsgs []string // "" for safe
	}{
		{
			desc: "private parents",
			make: func(t *testing.T, dir string) string { return mkdirs(t, dir, "p", "incoming") },
		},
		{
			desc: "incoming owned by another user in a private parent",
			root: true,
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "p", "incoming")
				chown(t, inc, nobody)
				return inc
			},
		},
		{
			desc: "incoming is a symlink",
			make: func(t *testing.T, dir string) string {
				target := mkdirs(t, dir, "elsewhere")
				inc := filepath.Join(dir, "incoming")
				if err := os.Symlink(target, inc); err != nil {
					t.Fatal(err)
				}
				return inc
			},
			wantMsgs: []string{"is a symlink"},
		},
		{
			desc: "parent owned by another user",
			root: true,
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "home", "incoming")
				chown(t, filepath.Dir(inc), nobody)
				return inc
			},
			wantMsgs: []string{"parent " + filepath.Join("DIR", "home") + " is writable by uid 65534", unsafeFix},
		},
		{
			desc: "grandparent owned by another user",
			root: true,
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "home", "sub", "incoming")
				chown(t, filepath.Join(dir, "home"), nobody)
				return inc
			},
			wantMsgs: []string{"parent " + filepath.Join("DIR", "home") + " is writable by uid 65534"},
		},
		{
			desc: "group-writable parent",
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "p", "incoming")
				chmod(t, filepath.Dir(inc), 0o775)
				return inc
			},
			wantMsgs: []string{"is writable by group"},
		},
		{
			desc: "world-writable parent",
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "p", "incoming")
				chmod(t, filepath.Dir(inc), 0o777)
				return inc
			},
			wantMsgs: []string{"is world-writable"},
		},
		{
			desc: "sticky world-writable grandparent, own parent",
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "tmp", "p", "incoming")
				chmod(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
				return inc
			},
		},
		{
			desc: "sticky world-writable grandparent, parent of another user",
			root: true,
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "tmp", "p", "incoming")
				chmod(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
				chown(t, filepath.Join(dir, "tmp", "p"), nobody)
				return inc
			},
			wantMsgs: []string{filepath.Join("DIR", "tmp", "p") + " is owned by uid 65534", "who can replace it in " + filepath.Join("DIR", "tmp") + ","},
		},
		{
			desc: "incoming of another user directly in a sticky directory",
			root: true,
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "tmp", "incoming")
				chmod(t, filepath.Join(dir, "tmp"), 0o777|os.ModeSticky)
				chown(t, inc, nobody)
				return inc
			},
			wantMsgs: []string{filepath.Join("DIR", "tmp", "incoming") + " is owned by uid 65534", "who can replace it in " + filepath.Join("DIR", "tmp") + ","},
		},
		{
			desc: "symlinked parent in a private directory",
			make: func(t *testing.T, dir string) string {
				real := mkdirs(t, dir, "real")
				mkdirs(t, real, "incoming")
				if err := os.Symlink("real", filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "link", "incoming")
			},
		},
		{
			desc: "symlinked parent whose target is in a writable directory",
			make: func(t *testing.T, dir string) string {
				inc := mkdirs(t, dir, "open", "real", "incoming")
				chmod(t, filepath.Join(dir, "open"), 0o777)
				if err := os.Symlink(filepath.Join(dir, "open", "real"), filepath.Join(dir, "link")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "link", filepath.Base(inc))
			},
			wantMsgs: []string{"parent " + filepath.Join("DIR", "open") + " is world-writable"},
		},
		{
			desc: "symlinked parent in a writable directory",
			make: func(t *testing.T, dir string) string {
				mkdirs(t, dir, "real", "incoming")
				open := mkdirs(t, dir, "open")
				if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(open, "link")); err != nil {
					t.Fatal(err)
				}
				chmod(t, open, 0o777)
				return filepath.Join(open, "link", "incoming")
			},
			wantMsgs: []string{"parent " + filepath.Join("DIR", "open") + " is world-writable"},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to give files to another user")
			}
			dir := t.TempDir()
			inc := tc.make(t, dir)
			r, err := openIncoming(inc)
			if len(tc.wantMsgs) == 0 {
				if err != nil {
					t.Fatalf("openIncoming(%s): %v, want it opened", inc, err)
				}
				r.Close()
				return
			}
			if err == nil {
				r.Close()
				t.Fatalf("openIncoming(%s) opened it, want refused", inc)
			}
			if !errors.Is(err, ErrUnsafeIncoming) {
				t.Errorf("error %v, want ErrUnsafeIncoming", err)
			}
			for _, want := range tc.wantMsgs {
				if want = strings.ReplaceAll(want, "DIR", dir); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q, want it to say %q", err, want)
				}
			}
		})
	}
}

// TestIncomingSymlinkUntouched: incoming replaced by a symlink to another
// directory: Install refuses before it reads, removes or writes anything
// there.
func TestIncomingSymlinkUntouched(t *testing.T) {
	n := newNode(t, nodeOptions{})
	b := n.bundle(name, bundleOptions{})
	target := filepath.Join(n.dir, "precious")
	if err := os.Rename(n.incoming, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, n.incoming); err != nil {
		t.Fatal(err)
	}
	res, err := n.in.Install(context.Background(), []string{name}, Options{})
	if !errors.Is(err, ErrUnsafeIncoming) || !strings.Contains(err.Error(), n.incoming) {
		t.Fatalf("Install: %v %+v, want refused naming %s", err, res, n.incoming)
	}
	if !n.exists(filepath.Join(target, name, b.id)) {
		t.Errorf("bundle in the symlink's target removed")
	}
	if n.exists(filepath.Join(target, wire.StatusDir)) {
		t.Errorf("status written into the symlink's target")
	}
	if n.liveTarget(name) != "" {
		t.Errorf("installed through a symlinked incoming")
	}
}

func mkdirs(t *testing.T, dir string, names ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{dir}, names...)...)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, p string, uid int) {
	t.Helper()
	if err := os.Lchown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestOddFilesRefused: files in an upload that root must not copy or
// quote are refused before anything is staged, and no message carries
// their bytes.
func TestOddFilesRefused(t *testing.T) {
	const secret = "SECRETSECRETSECRET"
	testCases := []struct {
		desc string
		make func(n *node, b *testBundle)
		want string
	}{
		{
			desc: "key hard-linked to a file outside incoming",
			make: func(n *node, b *testBundle) {
				outside := filepath.Join(n.dir, "shadow")
				if err := os.WriteFile(outside, []byte(secret+"\n"), 0o600); err != nil {
					n.t.Fatal(err)
				}
				key := filepath.Join(b.dir, bundle.KeyFile)
				os.Remove(key)
				if err := os.Link(outside, key); err != nil {
					n.t.Fatal(err)
				}
			},
			want: "hard links",
		},
		{
			desc: "manifest that is not JSON",
			make: func(n *node, b *testBundle) {
				os.WriteFile(filepath.Join(b.dir, bundle.ManifestFile), []byte(secret), 0o644)
			},
			want: "not valid JSON",
		},
		{
			desc: "manifest with a bad id",
			make: func(n *node, b *testBundle) {
				os.WriteFile(filepath.Join(b.dir, bundle.ManifestFile), []byte(`{"version":1,"name":"example.com","id":"`+secret+`"}`), 0o644)
			},
			want: "bad bundle id",
		},
		{
			desc: "manifest with a bad time",
			make: func(n *node, b *testBundle) {
				os.WriteFile(filepath.Join(b.dir, bundle.ManifestFile), []byte(`{"version":1,"not_after":"`+secret+`"}`), 0o644)
			},
			want: "not a valid manifest",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			n := newNode(t, nodeOptions{})
			b := n.bundle(name, bundleOptions{})
			tc.make(n, b)
			for _, opts := range []Options{{ID: b.id}, {}} {
				n.push(b)
				tc.make(n, b)
				r := n.installOne(name, opts, Refused)
				if !errors.Is(r.Err, ErrBadIncoming) || !strings.Contains(r.Error, tc.want) {
					t.Errorf("%+v: error %q, want malformed (%q)", opts, r.Error, tc.want)
				}
				if strings.Contains(r.Error, "SECRET") {
					t.Errorf("%+v: error quotes the file: %q", opts, r.Error)
				}
				if entries, _ := os.ReadDir(filepath.Join(n.root, "archive", name)); len(entries) != 0 {
					t.Errorf("%+v: copied into the archive: %v", opts, entries)
				}
				if n.exists(b.dir) {
					t.Errorf("%+v: refused upload left in incoming", opts)
				}
			}
		})
	}
}

// TestUninstalledUploadsRemoved: complete uploads no run installed are
// removed once older than StaleBundle; younger ones are left for their
// push.
func TestUninstalledUploadsRemoved(t *testing.T) {
	n := newNode(t, nodeOptions{})
	old := n.bundle(name, bundleOptions{notBefore: time.Now().Add(-3 * time.Hour)})
	fresh := n.bundle(name, bundleOptions{notBefore: time.Now().Add(-2 * time.Hour)})
	then := time.Now().Add(-StaleBundle - time.Minute)
	if err := os.Chtimes(old.dir, then, then); err != nil {
		t.Fatal(err)
	}
	b := n.bundle(name, bundleOptions{})
	n.installOne(name, Options{ID: b.id}, Installed)
	if n.exists(old.dir) {
		t.Errorf("uninstalled upload older than %s kept: %s", StaleBundle, old.dir)
	}
	if !n.exists(fresh.dir) {
		t.Errorf("recent upload %s removed: its push may be about to install it", fresh.dir)
	}
}

// TestUploadRemovedWhileRead: a bundle that disappears while certnode
// copies it (its push gave up) is nothing to install, not malformed: here
// it is gone by the time the copy starts.
func TestUploadRemovedWhileRead(t *testing.T) {
	n := newNode(t, nodeOptions{})
	b := n.bundle(name, bundleOptions{})
	inc, err := openIncoming(n.incoming)
	if err != nil {
		t.Fatal(err)
	}
	defer inc.Close()
	a := &attempt{in: n.in, ctx: context.Background(), cert: n.cfg.Certs[name], inc: inc}
	// The key goes first, as a RemoveAll under way would leave it.
	os.Remove(filepath.Join(b.dir, bundle.ChainFile))
	os.RemoveAll(b.dir)
	if _, ok := a.stageCopy(b.id); ok {
		t.Fatal("staged a removed bundle")
	}
	if a.res.Result != Nothing || errors.Is(a.res.Err, ErrBadIncoming) {
		t.Errorf("result %q (%v), want nothing, not malformed", a.res.Result, a.res.Err)
	}
}
