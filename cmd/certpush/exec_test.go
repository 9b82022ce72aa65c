package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
)

// lbHook is an exec target standing in for a load balancer: deploy
// copies the combined PEM where the target's TLS listener reads it (as
// HAProxy's crt file), current prints what that file holds as openssl
// prints it. It records its argv, and on deploy the modes of what it was
// handed, in its state directory. Files in the state directory steer it:
// fail-deploy makes deploy fail, stuck makes deploy do nothing.
const lbHook = `#!/bin/sh
set -eu
state=$1
verb=$2
echo "$*" >> "$state/calls"
case $verb in
current)
	if [ -f "$state/served.pem" ]; then
		openssl x509 -in "$state/served.pem" -noout -fingerprint -sha256
	else
		echo none
	fi ;;
deploy)
	stat -c '%a' "$CERTPUSH_DIR" "$CERTPUSH_KEY" "$CERTPUSH_COMBINED" "$CERTPUSH_CERT" > "$state/modes"
	echo "$CERTPUSH_DIR" > "$state/dir"
	env | grep '^CERTPUSH_' | sort > "$state/env"
	if [ -f "$state/fail-deploy" ]; then echo "listener refused the certificate" >&2; exit 3; fi
	if [ -f "$state/stuck" ]; then exit 0; fi
	cp "$CERTPUSH_COMBINED" "$state/served.pem.tmp"
	mv "$state/served.pem.tmp" "$state/served.pem" ;;
*) echo "unknown verb $verb" >&2; exit 2 ;;
esac
`

// lbTarget is one exec target: its hook's state directory and the TLS
// listener serving what its hook deployed.
type lbTarget struct {
	name     string
	state    string
	addr     string
	noVerify bool // no verify: endpoint in the config (status asks current)
}

// newLBTarget starts the TLS listener of an exec target; it serves the
// state directory's served.pem (fullchain and key) read at each
// handshake, and fails the handshake while there is none.
func newLBTarget(t *testing.T, name string) *lbTarget {
	t.Helper()
	lt := &lbTarget{name: name, state: t.TempDir()}
	cfg := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		data, err := os.ReadFile(filepath.Join(lt.state, "served.pem"))
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(data, data)
		return &c, err
	}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
			}()
		}
	}()
	lt.addr = ln.Addr().String()
	return lt
}

// calls returns the verbs the hook was called with, in order, and checks
// that its argv was exactly the state directory and the verb.
func (lt *lbTarget) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(lt.state, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[0] != lt.state {
			t.Errorf("%s: hook called with %q, want %s VERB", lt.name, l, lt.state)
			continue
		}
		verbs = append(verbs, f[1])
	}
	os.Remove(filepath.Join(lt.state, "calls"))
	return verbs
}

func (lt *lbTarget) set(t *testing.T, flag string, on bool) {
	t.Helper()
	p := filepath.Join(lt.state, flag)
	if on {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		os.Remove(p)
	}
}

// served is the SHA-256 fingerprint (lowercase hex) of what the target's
// TLS listener serves, "" if nothing.
func (lt *lbTarget) served(t *testing.T) string {
	t.Helper()
	c, err := tls.Dial("tcp", lt.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading what is served
	if err != nil {
		return ""
	}
	defer c.Close()
	return bundle.Fingerprint(c.ConnectionState().PeerCertificates[0])
}

// addTargets rewrites the world's config: each target becomes an exec
// host (with its listener as verify endpoint) of the certificate, and
// edit, when set, changes the certificate's entry further.
func (w *world) addTargets(hook string, targets []*lbTarget, edit func(cert map[string]any)) {
	w.t.Helper()
	data, err := os.ReadFile(w.config)
	if err != nil {
		w.t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(data, &inv); err != nil {
		w.t.Fatal(err)
	}
	hosts := inv["hosts"].(map[string]any)
	cert := inv["certs"].(map[string]any)[certName].(map[string]any)
	names := cert["hosts"].([]any)
	for _, lt := range targets {
		entry := map[string]any{
			"type":    "exec",
			"exec":    []string{hook, lt.state},
			"timeout": "20s",
			"verify":  []string{lt.addr},
			"groups":  []string{"lb"},
		}
		if lt.noVerify {
			delete(entry, "verify")
		}
		hosts[lt.name] = entry
		names = append(names, lt.name)
	}
	cert["hosts"] = names
	if edit != nil {
		edit(cert)
	}
	if data, err = yaml.Marshal(inv); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(w.config, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func writeHook(t *testing.T) string {
	t.Helper()
	hook := filepath.Join(t.TempDir(), "lb-target")
	if err := os.WriteFile(hook, []byte(lbHook), 0o755); err != nil {
		t.Fatal(err)
	}
	return hook
}

// Exec targets go through the same push as SSH hosts: deployed only
// where current differs, checked with current again and over TLS, in
// deploy.log and the metrics, planned by --dry-run.
func TestExecTargets(t *testing.T) {
	w := newWorld(t, 1)
	hook := writeHook(t)
	lb1, lb2 := newLBTarget(t, "lb-1"), newLBTarget(t, "lb-2")
	w.addTargets(hook, []*lbTarget{lb1, lb2}, nil)
	fp := w.importNew()
	node := w.fleet.Hosts[0].Name

	metrics := filepath.Join(t.TempDir(), "certpush.prom")
	code, results, errs := w.pushJSON("--metrics-file", metrics)
	if code != 0 {
		t.Fatalf("push exited %d: %v", code, errs)
	}
	for _, h := range []string{node, "lb-1", "lb-2"} {
		if results[h] != "installed" {
			t.Errorf("%s: %q, want installed (%s)", h, results[h], errs[h])
		}
	}
	for _, lt := range []*lbTarget{lb1, lb2} {
		if got := lt.calls(t); strings.Join(got, ",") != "current,deploy,current" {
			t.Errorf("%s: calls %v, want current, deploy, current", lt.name, got)
		}
		if got := lt.served(t); got != fp {
			t.Errorf("%s serves %.16s, want %.16s", lt.name, got, fp)
		}
		modes, _ := os.ReadFile(filepath.Join(lt.state, "modes"))
		if strings.Fields(string(modes))[0] != "700" || strings.Join(strings.Fields(string(modes))[1:3], " ") != "600 600" {
			t.Errorf("%s: dir, key, combined modes %q, want 700 600 600", lt.name, modes)
		}
		dir, _ := os.ReadFile(filepath.Join(lt.state, "dir"))
		if _, err := os.Stat(strings.TrimSpace(string(dir))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: bundle directory %s left behind (%v)", lt.name, dir, err)
		}
		env, _ := os.ReadFile(filepath.Join(lt.state, "env"))
		for _, want := range []string{"CERTPUSH_NAME=" + certName, "CERTPUSH_TARGET=" + lt.name, "CERTPUSH_DOMAINS=" + strings.Join(domains, ","), "CERTPUSH_FP_SHA256=", "CERTPUSH_FP_MD5=", "CERTPUSH_NOT_AFTER=20", "CERTPUSH_VERB=deploy"} {
			if !strings.Contains(string(env), want) {
				t.Errorf("%s: environment lacks %s:\n%s", lt.name, want, env)
			}
		}
	}
	w.wantServed(fp)
	prom, err := os.ReadFile(metrics)
	if err != nil || !strings.Contains(string(prom), `host="lb-2"`) {
		t.Errorf("metrics lack lb-2 (%v):\n%s", err, prom)
	}
	log, _ := os.ReadFile(filepath.Join(w.stateDir, "deploy.log"))
	var lbLines int
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		var rec deployRecord
		if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(rec.Host, "lb-") && rec.Result == "installed" {
			lbLines++
		}
	}
	if lbLines != 2 {
		t.Errorf("deploy.log has %d installed lines for the targets, want 2:\n%s", lbLines, log)
	}

	// Matching fingerprint: current only, no deploy.
	if code, results, _ := w.pushJSON(); code != 0 || results["lb-1"] != "unchanged" || results["lb-2"] != "unchanged" {
		t.Errorf("second push: exit %d, %v; want unchanged", code, results)
	}
	for _, lt := range []*lbTarget{lb1, lb2} {
		if got := lt.calls(t); strings.Join(got, ",") != "current" {
			t.Errorf("%s: calls %v on a matching fingerprint, want current only", lt.name, got)
		}
	}

	// A new bundle: --dry-run plans it and deploys nothing.
	fp2 := w.importNew()
	if code, results, _ := w.pushJSON("--dry-run"); code != 0 || results["lb-1"] != "would_push" {
		t.Errorf("dry run: exit %d, %v; want would_push", code, results)
	}
	if got := lb1.calls(t); strings.Join(got, ",") != "current" {
		t.Errorf("dry run called %v, want current only", got)
	}

	// A target whose deploy leaves the old certificate fails; one whose
	// deploy fails says why.
	lb1.set(t, "stuck", true)
	lb2.set(t, "fail-deploy", true)
	code, results, errs = w.pushJSON()
	if code != 1 || results["lb-1"] != "failed" || results["lb-2"] != "failed" || results[node] != "installed" {
		t.Fatalf("push with broken targets: exit %d, %v", code, results)
	}
	if !strings.Contains(errs["lb-1"], "current reports "+fp[:16]) {
		t.Errorf("lb-1 error %q, want the old fingerprint named", errs["lb-1"])
	}
	if !strings.Contains(errs["lb-2"], "listener refused the certificate") {
		t.Errorf("lb-2 error %q, want the hook's stderr", errs["lb-2"])
	}
	if lb1.served(t) != fp || lb2.served(t) != fp {
		t.Errorf("broken targets changed what they serve")
	}
	lb1.set(t, "stuck", false)
	lb2.set(t, "fail-deploy", false)
	if code, results, _ := w.pushJSON(); code != 0 || results["lb-1"] != "installed" || results[node] != "unchanged" {
		t.Errorf("push after the fix: exit %d, %v", code, results)
	}
	if lb1.served(t) != fp2 || lb2.served(t) != fp2 {
		t.Errorf("targets do not serve the new certificate after the fix")
	}
	// status sees the targets' endpoints aligned.
	if code, states, _ := w.status(); code != 0 || states["lb-1"] != "aligned" {
		t.Errorf("status: exit %d, %v", code, states)
	}
}

// status asks an exec target without a verify endpoint through current.
func TestStatusAsksExecTargets(t *testing.T) {
	w := newWorld(t, 1)
	hook := writeHook(t)
	cdn := newLBTarget(t, "cdn-1")
	cdn.noVerify = true
	w.addTargets(hook, []*lbTarget{cdn}, nil)
	fp := w.importNew()
	if code, states, _ := w.status(); code != 1 || states["cdn-1"] != "stale" {
		t.Errorf("status before the push: exit %d, %v; want cdn-1 stale", code, states)
	}
	if code, results, errs := w.pushJSON(); code != 0 || results["cdn-1"] != "installed" {
		t.Fatalf("push: %d %v %v", code, results, errs)
	}
	if cdn.served(t) != fp {
		t.Fatalf("cdn-1 does not serve the new certificate")
	}
	cdn.calls(t)
	if code, states, _ := w.status(); code != 0 || states["cdn-1"] != "aligned" {
		t.Errorf("status after the push: exit %d, %v; want cdn-1 aligned", code, states)
	}
	if got := cdn.calls(t); strings.Join(got, ",") != "current" {
		t.Errorf("status called %v, want current only", got)
	}
	os.WriteFile(filepath.Join(cdn.state, "served.pem"), []byte("garbage"), 0o600)
	if code, states, _ := w.status(); code != 1 || states["cdn-1"] != "unreachable" {
		t.Errorf("status with a failing current: exit %d, %v; want unreachable", code, states)
	}
}
