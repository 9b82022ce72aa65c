package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type waveStatusOut struct {
	Waves []waveStatus `json:"waves"`
}

// Five waves over exec targets and sshd+nginx hosts: wave 3 fails, waves
// 4 and 5 stay untouched, --from-wave 3 after the fix completes the
// rollout and leaves waves 1 and 2 alone.
func TestFiveWaveRollout(t *testing.T) {
	w := newWorld(t, 3)
	hook := writeHook(t)
	lb1, lb2, lb3 := newLBTarget(t, "lb-1"), newLBTarget(t, "lb-2"), newLBTarget(t, "lb-3")
	w.addTargets(hook, []*lbTarget{lb1, lb2, lb3}, func(cert map[string]any) {
		cert["waves"] = []any{[]string{"lb-1"}, []string{"lb-2", "node-1"}, []string{"lb-3"}, "node-2", []string{"rest"}}
	})
	fp := w.importNew()
	boot := []string{w.fleet.Hosts[0].BootstrapFingerprint, w.fleet.Hosts[1].BootstrapFingerprint, w.fleet.Hosts[2].BootstrapFingerprint}

	// --dry-run plans all five waves.
	code, stdout, _ := w.certpush("push", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run exited %d", code)
	}
	for _, want := range []string{"1     lb-1", "2     node-1", "3     lb-3", "4     node-2", "5     node-3"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run plan lacks %q:\n%s", want, stdout)
		}
	}
	if lb3.calls(t); lb3.served(t) != "" {
		t.Errorf("dry run deployed")
	}

	// lb-3's deploy leaves the old certificate in place: wave 3 fails.
	lb3.set(t, "stuck", true)
	code, stdout, _ = w.certpush("push", "--json")
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	var out pushOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range out.Certs[0].Results {
		got[r.Host] = r.Result
	}
	want := map[string]string{"lb-1": "installed", "lb-2": "installed", "node-1": "installed", "lb-3": "failed", "node-2": "skipped", "node-3": "skipped"}
	for h, r := range want {
		if got[h] != r {
			t.Errorf("%s: %q, want %q", h, got[h], r)
		}
	}
	var msg struct {
		Certs []struct {
			Message string `json:"message"`
		} `json:"certs"`
	}
	json.Unmarshal([]byte(stdout), &msg)
	if m := msg.Certs[0].Message; m != "wave 3: 1 of 1 hosts failed: rollout stopped, 2 hosts untouched; after the fix: certpush push --from-wave 3 example.test" {
		t.Errorf("message %q: want the stop and the resume hint", m)
	}
	w.wantServed(fp, boot[1], boot[2])
	if lb1.served(t) != fp || lb2.served(t) != fp {
		t.Errorf("waves 1-2 targets do not serve the new certificate")
	}

	// status: per wave.
	code, stdout, _ = w.certpush("status", "--json")
	var st waveStatusOut
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || len(st.Waves) != 5 {
		t.Fatalf("status waves: %v, %+v", err, st)
	}
	for i, want := range []int{1, 2, 0, 0, 0} {
		if st.Waves[i].Aligned != want {
			t.Errorf("status wave %s: %d aligned, want %d (%+v)", st.Waves[i].Wave, st.Waves[i].Aligned, want, st.Waves[i])
		}
	}
	if code != 1 {
		t.Errorf("status exited %d with stale waves, want 1", code)
	}
	_, stdout, _ = w.certpush("status", "--fingerprint", "md5")
	if !strings.Contains(stdout, "FINGERPRINT (MD5)") || !strings.Contains(stdout, "CERT          WAVE  ALIGNED  TARGETS") {
		t.Errorf("status --fingerprint md5:\n%s", stdout)
	}

	// Fixed: resume at wave 3.
	lb1.calls(t)
	lb2.calls(t)
	lb3.set(t, "stuck", false)
	code, results, errs := w.pushJSON("--from-wave", "3")
	if code != 0 {
		t.Fatalf("--from-wave 3 exited %d: %v", code, errs)
	}
	for _, h := range []string{"lb-3", "node-2", "node-3"} {
		if results[h] != "installed" {
			t.Errorf("%s: %q after --from-wave 3, want installed", h, results[h])
		}
	}
	for _, h := range []string{"lb-1", "lb-2", "node-1"} {
		if _, ok := results[h]; ok {
			t.Errorf("%s touched by --from-wave 3: %q", h, results[h])
		}
	}
	if c := lb1.calls(t); len(c) != 0 {
		t.Errorf("lb-1 called by --from-wave 3: %v", c)
	}
	w.wantServed(fp, fp, fp)
	if code, _, _ := w.certpush("status"); code != 0 {
		t.Errorf("status after the fix exited %d", code)
	}
	if code, _, stderr := w.certpush("push", "--from-wave", "6"); code != 2 || !strings.Contains(stderr, "has 5 waves") {
		t.Errorf("--from-wave 6: exit %d, %s", code, stderr)
	}
}

// A pause between waves keeps checking the finished waves: when one
// stops serving the new certificate, the rollout stops.
func TestPauseCheckStopsRollout(t *testing.T) {
	w := newWorld(t, 1)
	hook := writeHook(t)
	lb1, lb2 := newLBTarget(t, "lb-1"), newLBTarget(t, "lb-2")
	w.addTargets(hook, []*lbTarget{lb1, lb2}, func(cert map[string]any) {
		cert["hosts"] = []string{"lb"}
		cert["waves"] = []any{"lb-1", "lb-2"}
		cert["pause"] = "5s"
	})
	fp := w.importNew()
	go func() {
		// Once lb-1 serves the new certificate and has been verified,
		// it loses it during the pause.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if lb1.served(t) == fp {
				time.Sleep(1500 * time.Millisecond)
				os.Remove(filepath.Join(lb1.state, "served.pem"))
				return
			}
		}
	}()
	start := time.Now()
	code, results, _ := w.pushJSON()
	if code != 1 || results["lb-1"] != "installed" || results["lb-2"] != "skipped" {
		t.Errorf("push: exit %d, %v; want lb-1 installed, lb-2 skipped", code, results)
	}
	if lb2.served(t) != "" {
		t.Errorf("lb-2 was deployed to")
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("push took %s", time.Since(start))
	}
}
