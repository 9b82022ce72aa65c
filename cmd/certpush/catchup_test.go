package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testacme"
)

// A host back from an outage gets the current certificate before the
// renewal's order, not only after it: sync pushes the current bundle to
// the hosts whose last push failed first, then renews and pushes the new
// one to every host. (Pebble's window for a three-minute certificate
// starts at issuance, so every sync renews.)
func TestSyncCatchesUpFailedHostsBeforeTheOrder(t *testing.T) {
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
