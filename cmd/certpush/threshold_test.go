package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certpush/certpush/internal/devca"
)

// renew with renew_before: a certificate that is not due is reused as
// stored, without contacting the CA (which is down by then), and pushed
// only where the fingerprint differs.
func TestThresholdRenewalReusesStoredBundle(t *testing.T) {
	w := newACMEWorld(t, 1, 0, map[string]any{
		"challenge":    map[string]any{"type": "dns-01", "provider": "exec"},
		"renew_before": "168h",
	})
	hook := writeHook(t)
	lb := newLBTarget(t, "slb")
	w.addTargets(hook, []*lbTarget{lb}, nil)

	code, results, errs := w.pushJSONCmd("renew")
	if code != 0 || results["slb"] != "installed" || results["node-1"] != "installed" {
		t.Fatalf("first renew: exit %d, %v %v", code, results, errs)
	}
	b := w.current()
	if lb.served(t) != b.Manifest.Fingerprint {
		t.Fatalf("slb does not serve the obtained certificate")
	}
	lb.calls(t)

	// The CA goes away; the SLB is switched to another certificate by
	// hand.
	if err := w.srv.Close(); err != nil {
		t.Fatal(err)
	}
	other, _ := w.issue(devca.Leaf{})
	if err := os.WriteFile(filepath.Join(lb.state, "served.pem"), append(append([]byte(nil), other.Cert...), other.Key...), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := w.certpush("renew")
	if code != 0 {
		t.Fatalf("renew with the CA down exited %d", code)
	}
	if out := stdout + stderr; !strings.Contains(out, "not due") || !strings.Contains(out, "the CA was not contacted") {
		t.Errorf("stderr does not say the stored certificate was reused:\n%s", stderr)
	}
	if w.current().Manifest.ID != b.Manifest.ID {
		t.Errorf("a new bundle was made")
	}
	if got := lb.calls(t); strings.Join(got, ",") != "current,deploy,current" {
		t.Errorf("slb calls %v, want current, deploy, current", got)
	}
	if !regexpLine(stdout, "slb", "installed") || !regexpLine(stdout, "node-1", "unchanged") {
		t.Errorf("renew output: want slb installed, node-1 unchanged:\n%s", stdout)
	}
	if lb.served(t) != b.Manifest.Fingerprint {
		t.Errorf("slb does not serve the stored certificate again")
	}

	// Twice a day: nothing differs, nothing is deployed.
	code, results, _ = w.pushJSONCmd("renew")
	if code != 0 || results["slb"] != "unchanged" || results["node-1"] != "unchanged" {
		t.Errorf("third renew: exit %d, %v", code, results)
	}
	if got := lb.calls(t); strings.Join(got, ",") != "current" {
		t.Errorf("slb calls %v, want current only", got)
	}
}

// regexpLine reports whether a line of the push table names host with
// result.
func regexpLine(table, host, result string) bool {
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[2] == host && f[3] == result {
			return true
		}
	}
	return false
}
