package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testfleet"
)

// A host back from an outage gets the current certificate before the
// renewal's order, not only after it: sync pushes the current bundle to
// the hosts whose last push failed first, then renews and pushes the new
// one to every host. (Pebble's window for a three-minute certificate
// starts at issuance, so every sync renews.)
func TestSyncCatchesUpFailedHostsBeforeTheOrder(t *testing.T) {
	w, away := hostMissedASync(t)
	missed := w.current().Manifest.ID
	if err := away.StartSSH(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := w.certpush("sync")
	if code != 0 || !strings.Contains(stdout, "before the order, the current certificate to the hosts whose last push failed: "+away.Name) {
		t.Fatalf("sync after the return: %d %q", code, stdout)
	}
	renewed := w.current().Manifest
	if renewed.ID == missed {
		t.Fatal("sync did not renew")
	}
	w.wantServed(renewed.Fingerprint, renewed.Fingerprint)
	data, err := os.ReadFile(filepath.Join(w.stateDir, "deploy.log"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec deployRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Host == away.Name {
			got = append(got, rec.BundleID+" "+rec.Result)
		}
	}
	want := []string{missed + " failed", missed + " installed", renewed.ID + " installed"}
	if len(got) < 3 || strings.Join(got[len(got)-3:], ",") != strings.Join(want, ",") {
		t.Errorf("%s's deploy log %q, want it to end with %q", away.Name, got, want)
	}
}

// A host that comes back while the order runs gets the current
// certificate during the order, not after it: sync keeps trying the hosts
// still behind until the order ends. The DNS hook holds the order until
// the test has seen the returned host serve the current certificate.
func TestSyncCatchesUpAHostReturningDuringTheOrder(t *testing.T) {
	w, away := hostMissedASync(t)
	missed := w.current().Manifest

	// The DNS hook of the next order waits for release (at most 60 s).
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	gate := filepath.Join(dir, "gate")
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = present ]; then\n\t: >%s\n\ti=0\n\twhile [ ! -e %s ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\nfi\nexec %s \"$@\"\n", started, release, os.Getenv("EXEC_PATH"))
	if err := os.WriteFile(gate, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EXEC_PATH", gate)
	defer os.WriteFile(release, nil, 0o644)

	type result struct {
		code   int
		stdout string
	}
	res := make(chan result, 1)
	go func() {
		code, stdout, _ := w.certpush("sync")
		res <- result{code, stdout}
	}()
	waitFor(t, 60*time.Second, "the order to start", func() bool { _, err := os.Stat(started); return err == nil })
	if err := away.StartSSH(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, away.Name+" to serve the current certificate during the order", func() bool {
		fp, err := away.ServedFingerprint(context.Background(), "www.example.test")
		return err == nil && fp == missed.Fingerprint
	})
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.code != 0 || !strings.Contains(r.stdout, away.Name+" caught up with "+missed.ID+" while the order runs") {
		t.Fatalf("sync: %d %q", r.code, r.stdout)
	}
	renewed := w.current().Manifest
	if renewed.ID == missed.ID {
		t.Fatal("sync did not renew")
	}
	w.wantServed(renewed.Fingerprint, renewed.Fingerprint)
}

// waitFor polls ok every 100 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}

// hostMissedASync obtains a three-minute certificate for two hosts and
// runs sync with the second one's sshd down (pebble's window for so short
// a certificate starts at issuance, so the sync renews), leaving it down.
func hostMissedASync(t *testing.T) (*acmeWorld, *testfleet.Host) {
	t.Helper()
	profiles := map[string]testacme.Profile{"threeminutes": {Validity: 3 * time.Minute}}
	w := newModernWorld(t, 2, testacme.Options{Profiles: profiles}, withDNS01(map[string]any{"profile": "threeminutes"}), "")
	if code, _, _ := w.certpush("obtain", certName); code != 0 {
		t.Fatalf("obtain exited %d", code)
	}
	away := w.fleet.Hosts[1]
	if err := away.StopSSH(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := w.certpush("sync"); code != 1 {
		t.Fatalf("sync with %s down exited %d, want 1", away.Name, code)
	}
	return w, away
}
