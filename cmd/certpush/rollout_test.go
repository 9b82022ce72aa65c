package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/promtest"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testproc"
)

func TestCanaryFailureStopsRollout(t *testing.T) {
	w := newWorld(t, 4)
	canary := w.fleet.Hosts[0]
	if err := canary.BreakNginxConfig(); err != nil {
		t.Fatal(err)
	}
	w.importNew()
	before := w.trees()
	// node-1 is the canary: it rolls back, the rest must stay untouched.
	code, results, _ := w.pushJSON("--canary", "1")
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	if results[canary.Name] != "failed" {
		t.Errorf("canary: %q, want failed", results[canary.Name])
	}
	for _, h := range w.fleet.Hosts[1:] {
		if results[h.Name] != "skipped" {
			t.Errorf("%s: %q, want skipped", h.Name, results[h.Name])
		}
	}
	after := w.trees()
	// Only the canary's directories may differ (its status and archive).
	for _, h := range w.fleet.Hosts[1:] {
		for _, dir := range []string{h.Root, h.Incoming} {
			if tree(t, dir) != treeFrom(before, dir) || tree(t, dir) != treeFrom(after, dir) {
				t.Errorf("%s: %s changed although the canary failed", h.Name, dir)
			}
		}
	}
	var fps []string
	for _, h := range w.fleet.Hosts {
		fps = append(fps, h.BootstrapFingerprint)
	}
	w.wantServed(fps...)
}

// treeFrom picks the lines of one directory out of a trees() listing.
func treeFrom(listing, dir string) string {
	var lines []string
	for _, l := range strings.Split(listing, "\n") {
		if strings.HasPrefix(l, dir+" ") || strings.HasPrefix(l, dir+"/") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

type statusOutput struct {
	Endpoints []struct {
		Host  string `json:"host"`
		State string `json:"state"`
	} `json:"endpoints"`
	Summary string `json:"summary"`
}

func (w *world) status(args ...string) (int, map[string]string, string) {
	w.t.Helper()
	code, stdout, _ := w.certpush(append([]string{"status", "--json"}, args...)...)
	var out statusOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		w.t.Fatalf("status output is not JSON: %v", err)
	}
	states := map[string]string{}
	for _, e := range out.Endpoints {
		states[e.Host] = e.State
	}
	return code, states, out.Summary
}

func TestStatusReportsStaleAlignedUnreachable(t *testing.T) {
	w := newWorld(t, 3)
	fp := w.importNew()
	if code, _, _ := w.certpush("push", "--hosts", "node-1"); code != 0 {
		t.Fatalf("partial push exited %d", code)
	}
	code, states, summary := w.status()
	if code != 1 || states["node-1"] != "aligned" || states["node-2"] != "stale" || states["node-3"] != "stale" {
		t.Errorf("after a partial push: exit %d, %v", code, states)
	}
	if summary != "1/3 aligned, 2 stale" {
		t.Errorf("summary %q", summary)
	}

	metricsFile := filepath.Join(t.TempDir(), "certpush.prom")
	if code, _, _ := w.certpush("push", "--metrics-file", metricsFile); code != 0 {
		t.Fatalf("full push exited %d", code)
	}
	fams := promtest.Parse(t, metricsFile)
	if got := fams["certpush_hosts"]; got == nil {
		t.Error("push metrics lack certpush_hosts")
	}
	if n := len(fams["certpush_host_last_success_timestamp_seconds"].GetMetric()); n != 3 {
		t.Errorf("last-success samples: %d, want 3", n)
	}

	code, states, summary = w.status("--metrics-file", metricsFile)
	if code != 0 || summary != "3/3 aligned" {
		t.Errorf("after a full push: exit %d, %q", code, summary)
	}
	fams = promtest.Parse(t, metricsFile)
	aligned := 0.0
	for _, m := range fams["certpush_endpoint_aligned"].GetMetric() {
		aligned += m.GetGauge().GetValue()
	}
	if aligned != 3 {
		t.Errorf("aligned endpoints in metrics: %v, want 3", aligned)
	}
	b, _ := w.store().Current(certName)
	if v := fams["certpush_endpoint_not_after_timestamp_seconds"].GetMetric()[0].GetGauge().GetValue(); int64(v) != b.Manifest.NotAfter.Unix() {
		t.Errorf("endpoint not_after metric %v, want %d", v, b.Manifest.NotAfter.Unix())
	}
	// push's file holds the bundle's series: status must not repeat them
	// (node_exporter refuses duplicates across files).
	for name := range fams {
		if strings.HasPrefix(name, "certpush_cert_") || strings.HasPrefix(name, "certpush_host") {
			t.Errorf("status metrics repeat push's %s", name)
		}
	}

	down := w.fleet.Hosts[2]
	if err := down.StopNginx(); err != nil {
		t.Fatal(err)
	}
	code, states, summary = w.status()
	if code != 1 || states[down.Name] != "unreachable" || summary != "2/3 aligned, 1 unreachable" {
		t.Errorf("with nginx stopped on %s: exit %d, %v, %q", down.Name, code, states, summary)
	}
	// Back with a self-signed certificate for the names: no root vouches
	// for it, whatever it holds.
	serveSelfSigned(t, w, down)
	code, states, summary = w.status()
	if code != 1 || states[down.Name] != "untrusted" || summary != "2/3 aligned, 1 untrusted" {
		t.Errorf("with %s serving a self-signed certificate: exit %d, %v, %q", down.Name, code, states, summary)
	}

	// Fingerprints for monitoring systems that pin MD5 or SHA-1.
	_, stdout, _ := w.certpush("status", "--fingerprint", "sha1", certName)
	if !strings.Contains(stdout, "FINGERPRINT (SHA1)") || strings.Count(strings.Split(stdout, "\n")[1], ":") < 19 {
		t.Errorf("sha1 table:\n%s", stdout)
	}
	if code, _, _ := w.certpush("status", "--fingerprint", "crc32"); code != 2 {
		t.Errorf("unknown fingerprint hash: exit %d, want 2", code)
	}
	_ = fp
}

// serveSelfSigned points h's live directory at a self-signed certificate
// for the fleet's names and starts its nginx.
func serveSelfSigned(t *testing.T, w *world, h *testfleet.Host) {
	t.Helper()
	is, err := devca.SelfSigned(devca.Leaf{Domains: w.fleet.Domains})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(h.Root, "archive", certName, "selfsigned")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"fullchain.pem": is.Cert, "privkey.pem": is.Key} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, w.fleet.UID, w.fleet.GID); err != nil {
			t.Fatal(err)
		}
	}
	live := filepath.Join(h.Root, "live", certName)
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "archive", certName, "selfsigned"), live); err != nil {
		t.Fatal(err)
	}
	if err := h.StartNginx(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptLeavesHostsOldOrNew(t *testing.T) {
	w := newWorld(t, 4)
	fp := w.importNew()
	b, err := w.store().Current(certName)
	if err != nil {
		t.Fatal(err)
	}
	// Interrupt as soon as the first host has installed the bundle.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := filepath.Join(w.fleet.Hosts[0].Incoming, ".status", certName+".json")
	go func() {
		for ctx.Err() == nil {
			if data, err := os.ReadFile(first); err == nil {
				if m, err := bundle.ParseManifest(data); err == nil && m.ID == b.Manifest.ID {
					cancel()
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--config", w.config, "push", "--parallel", "1", "--json"}, &stdout, &stderr)
	t.Logf("interrupted push -> %d\n%s\n%s", code, stdout.String(), stderr.String())
	if code != 1 {
		t.Errorf("interrupted push exited %d, want 1", code)
	}
	var out pushOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	skipped := 0
	for _, r := range out.Certs[0].Results {
		if r.Result == "skipped" {
			skipped++
		}
	}
	if skipped == 0 {
		t.Error("no host was skipped after the interrupt")
	}
	// Every host serves the old certificate or the new one, completely.
	for i, got := range w.served() {
		h := w.fleet.Hosts[i]
		if got != fp && got != h.BootstrapFingerprint {
			t.Errorf("%s serves %.16s: neither old nor new", h.Name, got)
		}
		if tmp, _ := filepath.Glob(filepath.Join(h.Incoming, certName, ".tmp-*")); len(tmp) > 0 {
			t.Errorf("%s: upload left %v", h.Name, tmp)
		}
	}
	// The next run converges.
	if code, _, _ := w.certpush("push"); code != 0 {
		t.Fatalf("push after the interrupt exited %d", code)
	}
	w.wantServed(fp, fp, fp, fp)
}

func TestMaxFailuresStopsStartingHosts(t *testing.T) {
	w := newWorld(t, 4)
	for _, h := range w.fleet.Hosts[:2] {
		if err := h.StopSSH(); err != nil {
			t.Fatal(err)
		}
	}
	w.importNew()
	// One host at a time: node-1 fails (1, allowed), node-2 fails (2,
	// more than 1): node-3 and node-4 are never started.
	code, results, _ := w.pushJSON("--parallel", "1", "--max-failures", "1")
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	want := map[string]string{"node-1": "failed", "node-2": "failed", "node-3": "skipped", "node-4": "skipped"}
	for h, r := range want {
		if results[h] != r {
			t.Errorf("%s: %q, want %q", h, results[h], r)
		}
	}
	for _, h := range w.fleet.Hosts[2:] {
		if fp, _ := h.ServedFingerprint(context.Background(), ""); fp != h.BootstrapFingerprint {
			t.Errorf("%s was changed although the rollout stopped", h.Name)
		}
	}
}

func TestEveryVerifyEndpointIsChecked(t *testing.T) {
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	// A second endpoint that serves nothing: the host is not done.
	closed := testproc.MustFreePort(t)
	cfg, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(cfg), fmt.Sprintf("- 127.0.0.1:%d", h.TLSPort), fmt.Sprintf("- 127.0.0.1:%d\n      - 127.0.0.1:%d", h.TLSPort, closed), 1)
	if edited == string(cfg) {
		t.Fatalf("could not add an endpoint to:\n%s", cfg)
	}
	os.WriteFile(w.config, []byte(edited), 0o600)
	w.importNew()
	code, results, errs := w.pushJSON()
	if code != 1 || results[h.Name] != "failed" || !strings.Contains(errs[h.Name], fmt.Sprintf("127.0.0.1:%d", closed)) {
		t.Errorf("push with an endpoint down: %d %q %q", code, results[h.Name], errs[h.Name])
	}
}
