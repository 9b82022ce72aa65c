package install

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

// interrupted leaves n as a run killed right after it switched the live
// link to b would: b in archive and live, the record in place, b still in
// incoming. With switched false, the run died just before the switch.
func (n *node) interrupted(b *testBundle, switched bool) {
	n.t.Helper()
	prev, err := n.in.current(name)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := bundle.Write(filepath.Join(n.root, "archive", name, b.id), b.mat, b.m); err != nil {
		n.t.Fatal(err)
	}
	if err := n.in.writePending(name, prev, b.id); err != nil {
		n.t.Fatal(err)
	}
	if switched {
		if err := n.in.swap(name, filepath.Join("..", "archive", name, b.id)); err != nil {
			n.t.Fatal(err)
		}
	}
}

func (n *node) wantNoPending() {
	n.t.Helper()
	if n.exists(n.in.pendingPath(name)) {
		n.t.Errorf("install record %s left behind", n.in.pendingPath(name))
	}
}

func TestPendingRecordWrittenAndRemoved(t *testing.T) {
	n := newNode(t, nodeOptions{})
	// The test script sees the record: it is written before the switch.
	n.cfg.Certs[name].Test = []string{"/bin/sh", "-c", "cat " + n.in.pendingPath(name) + " >> " + filepath.Join(n.marks, "pending.log")}
	b := n.bundle(name, bundleOptions{})
	n.installOne(name, Options{}, Installed)
	got := n.lines("pending.log")
	if len(got) != 1 || !strings.Contains(got[0], `"id":"`+b.id+`"`) {
		t.Errorf("record seen by the config test: %q", got)
	}
	n.wantNoPending()

	// A rollback removes it too.
	n.mark("reload.fail", true)
	n.bundle(name, bundleOptions{})
	n.installOne(name, Options{}, RolledBack)
	n.wantNoPending()
}

func TestInterruptedAfterSwitchIsFinished(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)
	v2 := n.bundle(name, bundleOptions{})
	n.interrupted(v2, true)

	// Without the record this would be "unchanged", with no reload.
	r := n.installOne(name, Options{ID: v2.id}, Installed)
	if r.Previous != v1.id || r.ID != v2.id {
		t.Errorf("result %+v", r)
	}
	n.wantLive(name, v2.id)
	n.wantNoPending()
	if got := n.lines("reload.log"); !slices.Equal(got, []string{name + " " + v1.id, name + " " + v2.id}) {
		t.Errorf("reload.log %q", got)
	}
	if got := n.lines("test.log"); len(got) != 2 || !strings.Contains(got[1], v2.id) {
		t.Errorf("test.log %q", got)
	}
	if n.exists(v2.dir) {
		t.Errorf("incoming bundle kept after the install was finished")
	}
	if !n.exists(filepath.Join(n.incoming, wire.StatusDir, name+".json")) {
		t.Errorf("status not published")
	}
}

func TestInterruptedAfterSwitchFailingIsRolledBack(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)
	v2 := n.bundle(name, bundleOptions{})
	n.interrupted(v2, true)

	n.mark("test.fail", true)
	r := n.installOne(name, Options{ID: v2.id}, RolledBack)
	if r.Previous != v1.id {
		t.Errorf("result %+v", r)
	}
	n.wantLive(name, v1.id)
	n.wantNoPending()
	// The recovery reloaded the previous certificate, as the service may
	// have loaded the new one.
	if got := n.lines("reload.log"); len(got) < 2 || got[len(got)-1] != name+" "+v1.id {
		t.Errorf("reload.log %q", got)
	}
}

func TestInterruptedBeforeSwitchReloadsPrevious(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)
	v2 := n.bundle(name, bundleOptions{noPush: true})
	n.interrupted(v2, false)

	n.installOne(name, Options{}, Nothing)
	n.wantLive(name, v1.id)
	n.wantNoPending()
	if got := n.lines("reload.log"); !slices.Equal(got, []string{name + " " + v1.id, name + " " + v1.id}) {
		t.Errorf("reload.log %q", got)
	}
}

func TestInterruptedRecoveryFailingKeepsRecord(t *testing.T) {
	n := newNode(t, nodeOptions{})
	now := time.Now()
	v1 := n.bundle(name, bundleOptions{notBefore: now.Add(-48 * time.Hour)})
	n.installOne(name, Options{}, Installed)
	v2 := n.bundle(name, bundleOptions{})
	n.interrupted(v2, true)

	// Neither certificate is served: the node's state is unknown.
	other := n.bundle(name, bundleOptions{noPush: true})
	n.server.pinTo(t, other)
	n.cfg.Certs[name].VerifyTimeout = 300 * time.Millisecond
	r := n.installOne(name, Options{ID: v2.id}, Failed)
	if !strings.Contains(r.Error, "interrupted install") {
		t.Errorf("error %q", r.Error)
	}
	if !n.exists(n.in.pendingPath(name)) {
		t.Errorf("record removed although the recovery failed")
	}
	_ = v1
}

func TestAbandonedUploadsRemoved(t *testing.T) {
	n := newNode(t, nodeOptions{})
	old := filepath.Join(n.incoming, name, ".tmp-0123456789abcdef")
	fresh := filepath.Join(n.incoming, name, ".tmp-fedcba9876543210")
	for _, d := range []string{old, fresh} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, bundle.KeyFile), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	then := time.Now().Add(-StaleUpload - time.Minute)
	if err := os.Chtimes(old, then, then); err != nil {
		t.Fatal(err)
	}
	n.installOne(name, Options{}, Nothing)
	if n.exists(old) {
		t.Errorf("abandoned upload %s kept", old)
	}
	if !n.exists(fresh) {
		t.Errorf("recent upload %s removed: it may be a push under way", fresh)
	}
}
