package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSyncRetriesEveryCertificate imports a certificate (no ACME) while
// one host is down: renew has nothing to do with it, but sync, the timer's
// command, pushes it to the host once it is back, and then finds nothing
// left to do.
func TestSyncRetriesEveryCertificate(t *testing.T) {
	w := newWorld(t, 2)
	down := w.fleet.Hosts[1]
	if err := down.StopSSH(); err != nil {
		t.Fatal(err)
	}
	w.importNew()
	if code, results, _ := w.pushJSON(); code != 1 || results[down.Name] != "failed" || results[w.fleet.Hosts[0].Name] != "installed" {
		t.Fatalf("push with %s down: %d %v", down.Name, code, results)
	}
	if code, _, stderr := w.certpush("renew"); code != 2 || !strings.Contains(stderr, "renew only handles ACME certificates") {
		t.Errorf("renew of an imported certificate: %d %q", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := down.StartSSH(ctx); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := w.certpush("sync", "--json")
	if code != 0 || !strings.Contains(stdout, `"host": "`+down.Name+`"`) || strings.Count(stdout, `"result": "installed"`) != 1 || strings.Count(stdout, `"result": "unchanged"`) != 1 {
		t.Fatalf("sync after %s came back: %d\n%s\n%s", down.Name, code, stdout, stderr)
	}
	if code, stdout, _ := w.certpush("sync", "--json"); code != 0 || strings.Count(stdout, `"result": "unchanged"`) != 2 {
		t.Errorf("second sync: %d\n%s", code, stdout)
	}
}
