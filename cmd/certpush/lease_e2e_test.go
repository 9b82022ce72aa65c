package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/certpush/certpush/internal/pull"
	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/teststore"
)

// TestRenewLease: ten candidates run renew --lease at the same moment
// against one store; exactly one renews (one order at pebble) and
// publishes, the others see the lease held.
func TestRenewLease(t *testing.T) {
	const n = 10
	w, srv, configs := newCandidates(t, n)
	outs := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(certpushBin, "--config", configs[i], "renew", "--lease")
			cmd.Env = os.Environ()
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			<-start
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); ok {
				codes[i] = ee.ExitCode()
			} else if err != nil {
				codes[i] = -1
			}
			outs[i] = out.String()
		})
	}
	close(start)
	wg.Wait()
	published, held := 0, 0
	for i := range n {
		t.Logf("candidate %d -> %d\n%s", i, codes[i], outs[i])
		if codes[i] != 0 {
			t.Errorf("candidate %d exited %d", i, codes[i])
		}
		if strings.Contains(outs[i], "published") {
			published++
		}
		if strings.Contains(outs[i], "lease held") {
			held++
		}
	}
	if published != 1 || held != n-1 {
		t.Fatalf("%d candidates published and %d saw the lease held; want 1 and %d", published, held, n-1)
	}
	pebbleLog := func(what string) int {
		log, err := os.ReadFile(filepath.Join(w.srv.Dir, "pebble.log"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(log), what)
	}
	if got := pebbleLog("Added order"); got != 1 {
		t.Fatalf("pebble saw %d orders, want 1", got)
	}
	// Released: another candidate takes the lease, finds the certificate
	// not due, and uses the account shared through the store (no second
	// registration at pebble).
	other := 0
	for i := range n {
		if strings.Contains(outs[i], "lease held") {
			other = i
			break
		}
	}
	code, stdout, _ := w.certpushWith(configs[other], "renew", "--lease")
	if code != 0 || !strings.Contains(stdout, "not due") {
		t.Fatalf("second candidate: exit %d %q, want not due", code, stdout)
	}
	if got := pebbleLog("Added order"); got != 1 {
		t.Fatalf("pebble saw %d orders after the second run, want 1", got)
	}
	if got := pebbleLog("POST /sign-me-up"); got != 1 {
		t.Fatalf("%d account registrations, want 1 (the account is shared through the store)", got)
	}
	st := srv.Open(t, "lease")
	assertNoClearKeyCLI(t, st)
}

// newCandidates is a pebble, a versitygw store and n renewal candidates'
// configs, each with its own state directory and identity, all
// recipients of the store's keys.
func newCandidates(t *testing.T, n int) (*acmeWorld, *teststore.Server, []string) {
	t.Helper()
	w := newACMEWorld(t, 1, 0, dns01)
	srv := teststore.Start(t)
	sc := srv.Config("lease")
	base, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	var recipients, identities []string
	for range n {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "identity.age")
		if err := os.WriteFile(p, []byte(id.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		recipients = append(recipients, id.Recipient().String())
		identities = append(identities, p)
	}
	configs := make([]string, n)
	for i := range n {
		dir := t.TempDir()
		cfg := strings.ReplaceAll(string(base), w.stateDir, filepath.Join(dir, "state"))
		cfg += fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  recipients: [%s]\n  identity: %s\n",
			sc.URL, sc.Endpoint, strings.Join(recipients, ", "), identities[i])
		configs[i] = filepath.Join(dir, "certpush.yaml")
		if err := os.WriteFile(configs[i], []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return w, srv, configs
}

// TestRenewLeaseHolderKilled: the lease holder is killed mid-renewal;
// another candidate sees the lease held until it expires, then takes it
// over, renews and publishes.
func TestRenewLeaseHolderKilled(t *testing.T) {
	w, srv, configs := newCandidates(t, 2)
	st := srv.Open(t, "lease")
	ctx := context.Background()
	a := exec.Command(certpushBin, "--config", configs[0], "renew", "--lease", "--lease-ttl", "3s")
	a.Env = os.Environ()
	var aout bytes.Buffer
	a.Stdout, a.Stderr = &aout, &aout
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it as soon as it holds the lease (it then spends seconds with
	// pebble).
	var rec pull.LeaseRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := st.Get(ctx, store.LeaseKey(certName), "", store.MaxObject)
		if err == nil && json.Unmarshal(o.Data, &rec) == nil {
			break
		}
		if time.Now().After(deadline) {
			a.Process.Kill()
			a.Wait()
			t.Fatalf("no lease appeared\n%s", aout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	a.Wait()
	if _, err := st.Get(ctx, store.CurrentKey(certName), "", store.MaxObject); err == nil {
		t.Fatal("the killed holder published")
	}
	code, stdout, _ := w.certpushWith(configs[1], "renew", "--lease")
	if code != 0 || !strings.Contains(stdout, "lease held by") {
		t.Fatalf("while the dead holder's lease runs: exit %d %q, want it held", code, stdout)
	}
	// Its lease expires (3 s after its last refresh, at most one refresh
	// in).
	time.Sleep(time.Until(rec.Expires.Add(2 * time.Second)))
	code, stdout, _ = w.certpushWith(configs[1], "renew", "--lease")
	if code != 0 || !strings.Contains(stdout, "published") {
		t.Fatalf("after the lease expired: exit %d %q, want a renewal", code, stdout)
	}
}

// certpushWith runs certpush in process with another config.
func (w *world) certpushWith(config string, args ...string) (int, string, string) {
	w.t.Helper()
	saved := w.config
	w.config = config
	defer func() { w.config = saved }()
	return w.certpush(args...)
}

// assertNoClearKeyCLI reads every object of the store: none may hold a
// private key (TLS key or ACME account key) in clear.
func assertNoClearKeyCLI(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	keys, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(keys, store.AccountKey) {
		t.Fatalf("no shared account in the store: %q", keys)
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
