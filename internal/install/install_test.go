package install

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

const name = "example.com"

func TestInstallSuccess(t *testing.T) {
	n := newNode(t, nodeOptions{})
	b := n.bundle(name, bundleOptions{})
	r := n.installOne(name, Options{}, Installed)
	if r.ID != b.id || r.Previous != "" || r.Fingerprint != b.m.Fingerprint || !r.NotAfter.Equal(b.m.NotAfter) || r.Error != "" {
		t.Errorf("result %+v", r)
	}
	n.wantLive(name, b.id)

	version := filepath.Join(n.root, "archive", name, b.id)
	for _, f := range append(append([]string{}, bundle.Files...), bundle.ManifestFile) {
		fi, err := os.Stat(filepath.Join(version, f))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if f == bundle.KeyFile {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", f, fi.Mode().Perm(), want)
		}
	}
	if fi, err := os.Stat(version); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("version dir: %v %v", fi.Mode(), err)
	}
	// The installed copy is a complete, verifying bundle.
	ib, err := bundle.Open(filepath.Join(n.root, "live", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ib.Verify(n.cfg.TrustedKeys, time.Now()); err != nil {
		t.Errorf("installed bundle: %v", err)
	}

	// Status for the push account: the exact manifest bytes, 0644.
	status := filepath.Join(n.incoming, wire.StatusDir, name+".json")
	got, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(version, bundle.ManifestFile))
	if !bytes.Equal(got, want) {
		t.Errorf("status file differs from the installed manifest")
	}
	if fi, _ := os.Stat(status); fi.Mode().Perm() != 0o644 {
		t.Errorf("status mode %v", fi.Mode().Perm())
	}
	if n.exists(b.dir) {
		t.Errorf("incoming %s still there", b.dir)
	}
	// Test got the environment; reload ran once.
	if got := n.lines("test.log"); len(got) != 1 || got[0] != name+" "+b.id+" "+filepath.Join(n.root, "live", name) {
		t.Errorf("test.log %q", got)
	}
	if got := n.lines("reload.log"); len(got) != 1 || got[0] != name+" "+b.id {
		t.Errorf("reload.log %q", got)
	}

	// Status and check see it.
	st, err := n.in.Status(context.Background())
	if err != nil || len(st) != 1 {
		t.Fatalf("status %+v %v", st, err)
	}
	if s := st[0]; s.ID != b.id || !s.Serving || s.Served != b.m.Fingerprint || s.DaysLeft < 80 || s.Error != "" {
		t.Errorf("status %+v", s)
	}
	ck, _ := n.in.Check(14)
	if ck[0].Problem != "" {
		t.Errorf("check 14: %q", ck[0].Problem)
	}
	ck, _ = n.in.Check(100)
	if !strings.Contains(ck[0].Problem, "expires in") {
		t.Errorf("check 100: %q", ck[0].Problem)
	}

	// Same bundle again: unchanged, no reload, incoming cleaned.
	n.push(b)
	r = n.installOne(name, Options{}, Unchanged)
	if r.ID != b.id || r.Previous != b.id {
		t.Errorf("unchanged result %+v", r)
	}
	if n.exists(b.dir) {
		t.Errorf("incoming kept after unchanged")
	}
	if got := n.lines("reload.log"); len(got) != 1 {
		t.Errorf("reloaded on unchanged: %q", got)
	}
	// Nothing waiting.
	n.installOne(name, Options{}, Nothing)
	// Asked for by id, already installed and gone from incoming.
	n.installOne(name, Options{ID: b.id}, Unchanged)
}

func TestInstallOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	n := newNode(t, nodeOptions{extra: "    owner: nobody\n    group: \"4242\"\n    key_mode: \"0640\"\n"})
	b := n.bundle(name, bundleOptions{})
	n.installOne(name, Options{}, Installed)
	uid, _ := strconv.Atoi(u.Uid)
	for _, f := range bundle.Files {
		fi, err := os.Stat(filepath.Join(n.root, "archive", name, b.id, f))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || st.Gid != 4242 {
			t.Errorf("%s: owner %d:%d", f, st.Uid, st.Gid)
		}
		if f == bundle.KeyFile && fi.Mode().Perm() != 0o640 {
			t.Errorf("key mode %v", fi.Mode().Perm())
		}
	}
}

func TestInstallRefused(t *testing.T) {
	other := func() *bundle.Signer {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		return bundle.NewSigner(k)
	}
	testCases := []struct {
		desc    string
		make    func(n *node) *testBundle
		wantErr error
		wantMsg string
	}{
		{
			desc: "tampered file",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{})
				f := filepath.Join(b.dir, bundle.ChainFile)
				data, _ := os.ReadFile(f)
				os.WriteFile(f, append(data, '\n'), 0o644)
				return b
			},
			wantErr: bundle.ErrHashMismatch,
		},
		{
			desc: "manifest changed after signing",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{noPush: true})
				b.m.Source = bundle.SourceACME
				n.push(b)
				return b
			},
			wantErr: bundle.ErrBadSignature,
		},
		{
			desc:    "untrusted key",
			make:    func(n *node) *testBundle { return n.bundle(name, bundleOptions{signer: other()}) },
			wantErr: bundle.ErrUntrustedKey,
		},
		{
			desc:    "unsigned",
			make:    func(n *node) *testBundle { return n.bundle(name, bundleOptions{unsigned: true}) },
			wantErr: bundle.ErrUnsigned,
		},
		{
			desc: "expired",
			make: func(n *node) *testBundle {
				return n.bundle(name, bundleOptions{notBefore: time.Now().Add(-100 * 24 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
			},
			wantErr: bundle.ErrExpired,
		},
		{
			desc:    "does not cover the configured domains",
			make:    func(n *node) *testBundle { return n.bundle(name, bundleOptions{domains: []string{name}}) },
			wantErr: bundle.ErrNames,
		},
		{
			desc: "bundle of another certificate",
			make: func(n *node) *testBundle {
				b := n.bundle("example.org", bundleOptions{domains: []string{name, "*." + name}, noPush: true})
				b.dir = filepath.Join(n.incoming, name, b.id)
				n.push(b)
				return b
			},
			wantErr: ErrNameMismatch,
		},
		{
			desc: "key is a symlink",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{})
				key := filepath.Join(b.dir, bundle.KeyFile)
				outside := filepath.Join(n.dir, "stolen.pem")
				os.Rename(key, outside)
				if err := os.Symlink(outside, key); err != nil {
					t.Fatal(err)
				}
				return b
			},
			wantErr: ErrBadIncoming,
			wantMsg: "symlink",
		},
		{
			desc: "key is a symlink inside incoming",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{})
				key := filepath.Join(b.dir, bundle.KeyFile)
				os.Rename(key, filepath.Join(n.incoming, "k.pem"))
				if err := os.Symlink("../../k.pem", key); err != nil {
					t.Fatal(err)
				}
				return b
			},
			wantErr: ErrBadIncoming,
			wantMsg: "symlink",
		},
		{
			desc: "certificate directory is a symlink",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{noPush: true})
				elsewhere := filepath.Join(n.dir, "elsewhere")
				b.dir = filepath.Join(elsewhere, b.id)
				n.push(b)
				os.Remove(filepath.Join(n.incoming, name))
				if err := os.Symlink(elsewhere, filepath.Join(n.incoming, name)); err != nil {
					t.Fatal(err)
				}
				return b
			},
			wantErr: ErrBadIncoming,
			wantMsg: "symlink",
		},
		{
			desc: "fifo instead of a file",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{})
				f := filepath.Join(b.dir, bundle.CertFile)
				os.Remove(f)
				if err := syscall.Mkfifo(f, 0o644); err != nil {
					t.Fatal(err)
				}
				return b
			},
			wantErr: ErrBadIncoming,
			wantMsg: "special file",
		},
		{
			desc: "directory named after another id",
			make: func(n *node) *testBundle {
				b := n.bundle(name, bundleOptions{noPush: true})
				b.dir = filepath.Join(n.incoming, name, "0123456789abcdef")
				n.push(b)
				return b
			},
			wantErr: ErrBadIncoming,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			n := newNode(t, nodeOptions{})
			// Something good installed first: it must stay live.
			good := n.bundle(name, bundleOptions{notBefore: time.Now().Add(-48 * time.Hour)})
			n.installOne(name, Options{}, Installed)

			b := tc.make(n)
			r := n.installOne(name, Options{}, Refused)
			if !errors.Is(r.Err, tc.wantErr) || !strings.Contains(r.Error, tc.wantMsg) {
				t.Errorf("error %v, want %v containing %q", r.Err, tc.wantErr, tc.wantMsg)
			}
			if r.Previous != good.id {
				t.Errorf("previous %q", r.Previous)
			}
			n.wantLive(name, good.id)
			if n.exists(filepath.Join(n.root, "archive", name, b.id)) {
				t.Errorf("refused bundle in archive")
			}
			if got := n.lines("reload.log"); len(got) != 1 {
				t.Errorf("reload ran for a refused bundle: %q", got)
			}
			if n.exists(filepath.Join(n.incoming, name, b.id)) {
				t.Errorf("refused bundle left in incoming")
			}
			entries, _ := os.ReadDir(filepath.Join(n.root, "archive", name))
			if len(entries) != 1 {
				t.Errorf("archive holds %d entries, want 1", len(entries))
			}
			status, _ := os.ReadFile(filepath.Join(n.incoming, wire.StatusDir, name+".json"))
			if m, err := bundle.ParseManifest(status); err != nil || m.ID != good.id {
				t.Errorf("status: %v", err)
			}
		})
	}
}

func TestUnsignedAllowedWithoutTrustedKeys(t *testing.T) {
	n := newNode(t, nodeOptions{})
	n.cfg.TrustedKeys = nil
	n.bundle(name, bundleOptions{unsigned: true})
	n.installOne(name, Options{}, Installed)
}

func TestNotConfigured(t *testing.T) {
	n := newNode(t, nodeOptions{})
	b := n.bundle("example.org", bundleOptions{})
	r := n.installOne("example.org", Options{}, Refused)
	if !errors.Is(r.Err, ErrNotConfigured) {
		t.Errorf("error %v", r.Err)
	}
	if n.liveTarget("example.org") != "" || n.exists(filepath.Join(n.root, "archive", "example.org")) {
		t.Errorf("unconfigured certificate installed")
	}
	if !n.exists(b.dir) {
		t.Errorf("incoming of an unconfigured name touched")
	}
	// Installing all configured certificates ignores it.
	res := n.install(nil, Options{})
	if len(res) != 1 || res[0].Cert != name || res[0].Result != Nothing {
		t.Errorf("install all: %+v", res)
	}
}

func TestNewestPicked(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	n.bundle(name, bundleOptions{notBefore: now.Add(-72 * time.Hour)})
	newest := n.bundle(name, bundleOptions{notBefore: now.Add(-time.Hour)})
	n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	os.MkdirAll(filepath.Join(n.incoming, name, ".tmp-upload"), 0o700)
	r := n.installOne(name, Options{}, Installed)
	if r.ID != newest.id {
		t.Errorf("installed %s, want newest %s", r.ID, newest.id)
	}
	entries, _ := os.ReadDir(filepath.Join(n.incoming, name))
	if len(entries) != 1 || entries[0].Name() != ".tmp-upload" {
		t.Errorf("incoming after install: %v", entries)
	}
}

func TestDowngrade(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	old := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour), noPush: true})
	cur := n.bundle(name, bundleOptions{notBefore: now.Add(-time.Hour)})
	n.installOne(name, Options{}, Installed)

	n.push(old)
	r := n.installOne(name, Options{ID: old.id}, Refused)
	if !errors.Is(r.Err, ErrDowngrade) || !strings.Contains(r.Error, old.m.NotBefore.UTC().Format(time.RFC3339)) ||
		!strings.Contains(r.Error, cur.m.NotBefore.UTC().Format(time.RFC3339)) {
		t.Errorf("error %v", r.Err)
	}
	n.wantLive(name, cur.id)

	n.push(old)
	r = n.installOne(name, Options{ID: old.id, Force: true}, Installed)
	if r.Previous != cur.id {
		t.Errorf("previous %q", r.Previous)
	}
	n.wantLive(name, old.id)

	// Back to the newer one: its version directory exists and is reused.
	n.push(cur)
	n.installOne(name, Options{ID: cur.id}, Installed)
	n.wantLive(name, cur.id)
	// Forced reinstall of the same version runs test and reload again.
	n.push(cur)
	n.installOne(name, Options{ID: cur.id, Force: true}, Installed)
	if got := n.lines("reload.log"); len(got) != 4 {
		t.Errorf("reload.log %q", got)
	}
}

func TestTestFailsRollsBack(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)

	n.mark("test.fail", true)
	v2 := n.bundle(name, bundleOptions{})
	r := n.installOne(name, Options{}, RolledBack)
	if !errors.Is(r.Err, ErrTestFailed) || !strings.Contains(r.Error, "cannot load certificate") {
		t.Errorf("error %v", r.Err)
	}
	n.wantLive(name, v1.id)
	if got := n.lines("reload.log"); len(got) != 1 {
		t.Errorf("reload ran after a failed test: %q", got)
	}
	if got := n.lines("test.log"); len(got) != 2 || !strings.Contains(got[1], v2.id) {
		t.Errorf("test.log %q", got)
	}
	if n.exists(filepath.Join(n.root, "archive", name, v2.id)) {
		t.Errorf("rolled-back version kept in archive")
	}

	// With nothing before, the live link goes away again.
	n2 := newNode(t, nodeOptions{})
	n2.mark("test.fail", true)
	n2.bundle(name, bundleOptions{})
	n2.installOne(name, Options{}, RolledBack)
	n2.wantLive(name, "")
	if n2.exists(filepath.Join(n2.incoming, wire.StatusDir, name+".json")) {
		t.Errorf("status written with nothing installed")
	}
}

func TestReloadFailsRollsBack(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)

	n.mark("reload.fail", true)
	v2 := n.bundle(name, bundleOptions{})
	r := n.installOne(name, Options{}, RolledBack)
	if !errors.Is(r.Err, ErrReloadFailed) || !strings.Contains(r.Error, "reload refused") {
		t.Errorf("error %v", r.Err)
	}
	n.wantLive(name, v1.id)
	want := []string{name + " " + v1.id, name + " " + v2.id, name + " " + v1.id}
	if got := n.lines("reload.log"); !slices.Equal(got, want) {
		t.Errorf("reload.log %q, want %q", got, want)
	}
}

func TestVerifyFailsRollsBack(t *testing.T) {
	n := newNode(t, nodeOptions{})
	n.cfg.Certs[name].VerifyTimeout = 500 * time.Millisecond
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)

	// The service keeps serving the old certificate after the reload.
	n.server.pinTo(t, v1)
	v2 := n.bundle(name, bundleOptions{})
	r := n.installOne(name, Options{}, RolledBack)
	if !errors.Is(r.Err, ErrVerifyFailed) || !strings.Contains(r.Error, v2.id) {
		t.Errorf("error %v", r.Err)
	}
	n.wantLive(name, v1.id)
	if got := n.lines("reload.log"); len(got) != 3 {
		t.Errorf("reload.log %q", got)
	}

	// Serving neither: the rollback is reported as incomplete.
	other := n.bundle(name, bundleOptions{noPush: true})
	n.server.pinTo(t, other)
	n.bundle(name, bundleOptions{})
	r = n.installOne(name, Options{}, Failed)
	if !errors.Is(r.Err, ErrRollback) || !errors.Is(r.Err, ErrVerifyFailed) {
		t.Errorf("error %v", r.Err)
	}
	n.wantLive(name, v1.id)
}

func TestPrune(t *testing.T) {
	n := newNode(t, nodeOptions{keep: 3})
	now := time.Now()
	var ids []string
	for i := range 5 {
		b := n.bundle(name, bundleOptions{notBefore: now.Add(time.Duration(i-10) * time.Hour)})
		n.installOne(name, Options{}, Installed)
		ids = append(ids, b.id)
	}
	entries, err := os.ReadDir(filepath.Join(n.root, "archive", name))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	want := slices.Clone(ids[2:])
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("archive %q, want %q", got, want)
	}
	n.wantLive(name, ids[4])
}

func TestLockSerializes(t *testing.T) {
	n := newNode(t, nodeOptions{certs: []string{"a.example", "b.example"}, reloadWait: true, noVerify: true})
	n.bundle("a.example", bundleOptions{})
	n.bundle("b.example", bundleOptions{})
	var wg sync.WaitGroup
	results := make([][]Result, 2)
	for i, c := range []string{"a.example", "b.example"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := n.installer()
			res, err := in.Install(context.Background(), []string{c}, Options{})
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	for _, res := range results {
		if len(res) != 1 || res[0].Result != Installed {
			t.Errorf("results %+v", res)
		}
	}
	got := n.lines("span.log")
	if len(got) != 4 {
		t.Fatalf("span.log %q", got)
	}
	for i := 0; i < 4; i += 2 {
		c := strings.TrimPrefix(got[i], "start ")
		if !strings.HasPrefix(got[i], "start ") || got[i+1] != "end "+c {
			t.Errorf("reloads overlap: %q", got)
		}
	}
}

func TestLockWaitsForContext(t *testing.T) {
	n := newNode(t, nodeOptions{noVerify: true})
	unlock, err := n.in.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := n.installer().Install(ctx, nil, Options{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want deadline exceeded", err)
	}
}

func TestStrayCleaned(t *testing.T) {
	n := newNode(t, nodeOptions{})
	stray := filepath.Join(n.root, "archive", name, ".tmp-0123456789abcdef-42")
	if err := os.MkdirAll(stray, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stray, bundle.KeyFile), []byte("half"), 0o600)
	os.MkdirAll(filepath.Join(n.root, "live"), 0o755)
	link := filepath.Join(n.root, "live", "."+name+".tmp")
	if err := os.Symlink("../archive/x", link); err != nil {
		t.Fatal(err)
	}
	n.installOne(name, Options{}, Nothing)
	if n.exists(stray) || n.exists(link) {
		t.Errorf("leftovers not removed")
	}
}

func TestStatusDirSymlinkReplaced(t *testing.T) {
	n := newNode(t, nodeOptions{})
	target := filepath.Join(n.dir, "target")
	os.MkdirAll(target, 0o755)
	if err := os.Symlink(target, filepath.Join(n.incoming, wire.StatusDir)); err != nil {
		t.Fatal(err)
	}
	n.bundle(name, bundleOptions{})
	n.installOne(name, Options{}, Installed)
	if entries, _ := os.ReadDir(target); len(entries) != 0 {
		t.Errorf("status written through a symlink: %v", entries)
	}
	fi, err := os.Lstat(filepath.Join(n.incoming, wire.StatusDir))
	if err != nil || !fi.IsDir() {
		t.Fatalf("status dir: %v %v", fi, err)
	}
	if !n.exists(filepath.Join(n.incoming, wire.StatusDir, name+".json")) {
		t.Errorf("no status file")
	}
}

func TestOptionsErrors(t *testing.T) {
	n := newNode(t, nodeOptions{noVerify: true})
	testCases := []struct {
		desc  string
		names []string
		opts  Options
	}{
		{desc: "id without a name", opts: Options{ID: "0123456789abcdef"}},
		{desc: "id with two names", names: []string{"a", "b"}, opts: Options{ID: "0123456789abcdef"}},
		{desc: "bad id", names: []string{name}, opts: Options{ID: "../../etc"}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			if _, err := n.in.Install(context.Background(), tc.names, tc.opts); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestCheckNothingInstalled(t *testing.T) {
	n := newNode(t, nodeOptions{noVerify: true})
	ck, err := n.in.Check(14)
	if err != nil || len(ck) != 1 || ck[0].Problem == "" {
		t.Errorf("check %+v %v", ck, err)
	}
}

func TestCommandTimeout(t *testing.T) {
	n := newNode(t, nodeOptions{noVerify: true})
	n.cfg.Timeout = 300 * time.Millisecond
	// The script's child keeps the output open: the whole group is killed.
	n.cfg.Certs[name].Test = []string{n.script("slow.sh", "sleep 30 &\nsleep 30\n")}
	n.bundle(name, bundleOptions{})
	start := time.Now()
	r := n.installOne(name, Options{}, RolledBack)
	if !errors.Is(r.Err, ErrTestFailed) || !strings.Contains(r.Error, "timed out after 300ms") {
		t.Errorf("error %v", r.Err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	n.wantLive(name, "")
}
