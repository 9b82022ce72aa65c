package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/teststore"
)

// TestRenewLease: ten candidates run renew --lease at the same moment
// against one store; exactly one renews (one order at pebble) and
// publishes, the others see the lease held.
func TestRenewLease(t *testing.T) {
	w := newACMEWorld(t, 1, 0, dns01)
	srv := teststore.Start(t)
	sc := srv.Config("lease")
	base, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
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
