package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/testfleet"
)

// faultSpec is one fault of the schedule: at At after the start (or when
// the one before has ended, if later), for Dur.
type faultSpec struct {
	Kind string
	Host string // "" for faults of the whole fleet
	At   time.Duration
	Dur  time.Duration
}

// What each kind of fault does, for the report.
var faultText = map[string]string{
	"hostdown":   "host down (sshd and nginx stopped) for longer than its certificate's remaining lifetime",
	"sshonly":    "sshd stopped across a renewal, nginx keeps serving",
	"partition":  "network partition: the host's sshd and nginx unreachable (its network namespace's veth link down: packets to it are lost)",
	"reloadfail": "the reload fails once (at a renewal)",
	"diskfull":   "full disk (tmpfs) on the host's archive across a renewal",
	"cadown":     "CA down (pebble frozen: connections accepted, nothing answered) across a renewal",
	"killpush":   "certpush sync killed (SIGKILL) while it pushes a new certificate",
	"rebuild":    "node rebuilt from scratch: empty root and incoming, certnode bootstrap, same host key",
	"newkey":     "node rebuilt with a new SSH host key (operator must trust it)",
	"storedown":  "the S3 store (versitygw) stopped across a renewal: certpush cannot publish, pull nodes cannot pull",
}

// schedule lays out the faults of a run in units of the lifetime L.
func schedule(p params) []faultSpec {
	L := p.Lifetime
	at := func(x float64) time.Duration { return time.Duration(x * float64(L)) }
	if !p.LongFaults {
		return []faultSpec{
			{Kind: "hostdown", Host: "node-3", At: at(0.3), Dur: at(1.2)},
			{Kind: "partition", Host: "node-1", At: at(1.6), Dur: at(0.5)},
			{Kind: "cadown", At: at(2.2), Dur: at(0.3)},
			{Kind: "newkey", Host: "node-5", At: at(2.7)},
		}
	}
	// Hosts by modeFor: pull nodes 3, 6, 9, 12, 15, 18; install: cron
	// 2, 4, 8, 10, 14, 16, 20; install: now 1, 5, 7, 11, 13, 17, 19.
	// Every host named is within the first 18.
	return []faultSpec{
		{Kind: "hostdown", Host: "node-3", At: at(0.5), Dur: at(1.25)},
		{Kind: "hostdown", Host: "node-5", At: at(2), Dur: at(1.25)},
		{Kind: "sshonly", Host: "node-7", At: at(3.4), Dur: at(0.4)},
		{Kind: "partition", Host: "node-11", At: at(4), Dur: at(1.25)},
		{Kind: "reloadfail", Host: "node-13", At: at(5.4)},
		{Kind: "diskfull", Host: "node-17", At: at(6), Dur: at(0.3)},
		{Kind: "cadown", At: at(6.6), Dur: at(0.35)},
		{Kind: "killpush", At: at(7.2)},
		{Kind: "storedown", At: at(7.8), Dur: at(0.4)},
		{Kind: "rebuild", Host: "node-5", At: at(8.6)},
		{Kind: "newkey", Host: "node-1", At: at(9.2)},
		{Kind: "hostdown", Host: "node-4", At: at(10), Dur: at(1.25)},
		{Kind: "sshonly", Host: "node-8", At: at(11.4), Dur: at(0.4)},
		{Kind: "rebuild", Host: "node-6", At: at(12)},
		{Kind: "rebuild", Host: "node-10", At: at(12.6)},
	}
}

// faultRec is a fault as it happened.
type faultRec struct {
	faultSpec
	Start, End time.Time
	// Unreachable: certpush could not reach the host during the fault.
	Unreachable bool
	// NeedNew: healed only by a certificate obtained after the fault.
	NeedNew bool
	Note    string
	Err     string
}

func (r *run) runFaults(ctx context.Context) {
	for _, spec := range r.p.Faults {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(r.start.Add(spec.At))):
		}
		f := &faultRec{faultSpec: spec}
		if err := r.inject(ctx, f); err != nil {
			f.Err = err.Error()
			r.t.Errorf("fault %s %s: %v", f.Kind, f.Host, err)
		}
		if f.End.IsZero() {
			f.End = time.Now()
		}
		if f.Host != "" && f.Kind != "newkey" {
			// Evidence that the fault bit: pushes refused meanwhile (or
			// just after, for the one reload refused).
			n, first := r.failedPushes(f.Host, f.Start, f.End.Add(r.p.Tick))
			if n > 0 {
				f.Note = strings.TrimPrefix(f.Note+fmt.Sprintf("; %d failed pushes, first: %q", n, firstSentence(first)), "; ")
			}
		}
		r.mu.Lock()
		r.faults = append(r.faults, f)
		r.mu.Unlock()
		r.t.Logf("fault %s %s: %s .. %s %s", f.Kind, f.Host, f.Start.Sub(r.start).Round(time.Second), f.End.Sub(r.start).Round(time.Second), f.Note)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// latest is the current certificate.
func (r *run) latest() issued {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.history[len(r.history)-1]
}

// beforeRenewal waits until lead before the current certificate is due,
// so that a renewal falls inside the fault.
func (r *run) beforeRenewal(ctx context.Context, lead time.Duration) {
	for ctx.Err() == nil {
		t := r.latest().renewAt(r.p).Add(-lead)
		if time.Until(t) > 0 {
			sleepCtx(ctx, time.Until(t))
			return
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

func (r *run) inject(ctx context.Context, f *faultRec) error {
	h := r.fleet.Host(f.Host)
	if f.Host != "" && h == nil {
		return fmt.Errorf("no host %s", f.Host)
	}
	start := func() { f.Start = time.Now() }
	switch f.Kind {
	case "hostdown":
		f.Unreachable = true
		start()
		r.setDown(h.Name, true)
		if err := errors.Join(h.StopNginx(), h.StopSSH()); err != nil {
			return err
		}
		sleepCtx(ctx, f.Dur)
		f.End = time.Now()
		return r.boot(ctx, f, h)
	case "sshonly":
		f.Unreachable = true
		r.beforeRenewal(ctx, f.Dur/4)
		start()
		if err := h.StopSSH(); err != nil {
			return err
		}
		sleepCtx(ctx, f.Dur)
		f.End = time.Now()
		return h.StartSSH(ctx)
	case "partition":
		f.Unreachable = true
		ns := r.nets[f.Host].ns
		start()
		if err := ns.Partition(true); err != nil {
			return err
		}
		sleepCtx(ctx, f.Dur)
		f.End = time.Now()
		return ns.Partition(false)
	case "reloadfail":
		flagFile := r.reloadFlag[f.Host]
		r.beforeRenewal(ctx, time.Second)
		start()
		if err := os.WriteFile(flagFile, nil, 0o644); err != nil {
			return err
		}
		if err := os.Chown(flagFile, r.fleet.UID, r.fleet.GID); err != nil {
			return err
		}
		for ctx.Err() == nil {
			if _, err := os.Stat(flagFile); errors.Is(err, os.ErrNotExist) {
				break
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
		f.End = time.Now()
		f.Note = "one reload refused"
		return nil
	case "diskfull":
		return r.diskFull(ctx, f, h)
	case "cadown":
		f.NeedNew = true
		r.beforeRenewal(ctx, 2*time.Second)
		start()
		if err := r.srv.Pause(); err != nil {
			return err
		}
		sleepCtx(ctx, f.Dur)
		f.End = time.Now()
		return r.srv.Resume()
	case "killpush":
		r.beforeRenewal(ctx, 2*time.Second)
		start()
		r.mu.Lock()
		r.killNext = true
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case t := <-r.killed:
			f.End = t
		}
		f.Note = "killed as the new certificate became current"
		return nil
	case "storedown":
		r.beforeRenewal(ctx, f.Dur/4)
		start()
		if err := r.s3.Stop(); err != nil {
			return err
		}
		sleepCtx(ctx, f.Dur)
		f.End = time.Now()
		f.Note = "pull nodes kept serving what they had"
		return r.s3.Restart()
	case "rebuild":
		return r.rebuild(ctx, f, h)
	case "newkey":
		return r.newKey(ctx, f, h)
	}
	return fmt.Errorf("unknown fault %q", f.Kind)
}

// diskFull puts the host's archive on a small tmpfs (its contents copied
// in), fills it across a renewal, and frees the space again.
func (r *run) diskFull(ctx context.Context, f *faultRec, h *testfleet.Host) error {
	archive := filepath.Join(h.Root, "archive")
	saved := h.Root + "-archive-copy"
	if err := run1("cp", "-a", archive, saved); err != nil {
		return err
	}
	if err := run1("mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "certpush-soak", archive); err != nil {
		return err
	}
	r.t.Cleanup(func() {
		if err := run1("umount", archive); err != nil {
			r.t.Log(err)
		}
	})
	if err := run1("cp", "-a", saved+"/.", archive+"/"); err != nil {
		return err
	}
	if err := errors.Join(os.Chown(archive, r.fleet.UID, r.fleet.GID), os.RemoveAll(saved)); err != nil {
		return err
	}
	r.beforeRenewal(ctx, f.Dur/4)
	f.Start = time.Now()
	filler := filepath.Join(archive, ".soak-filler")
	fh, err := os.OpenFile(filler, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		if _, err := fh.Write(buf); err != nil {
			break
		}
	}
	fh.Close()
	sleepCtx(ctx, f.Dur)
	f.End = time.Now()
	return os.Remove(filler)
}

// rebuild replaces the node by a fresh one with the same host key: empty
// root and incoming, the placeholder certificate its provisioning
// installs (certnode bootstrap), then sshd and nginx.
func (r *run) rebuild(ctx context.Context, f *faultRec, h *testfleet.Host) error {
	f.Unreachable = true
	f.Start = time.Now()
	r.setDown(h.Name, true)
	if err := errors.Join(h.StopNginx(), h.StopSSH()); err != nil {
		return err
	}
	for _, dir := range []string{h.Root, h.Incoming} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if out, code := r.certnode(ctx, h, "bootstrap", certName); code != 0 {
		return fmt.Errorf("certnode bootstrap exited %d: %s", code, out)
	}
	f.End = time.Now()
	f.Note = "placeholder served until the push"
	if r.mode[h.Name] == "pull" {
		f.Note = "the boot unit pulls before nginx starts"
	}
	return r.boot(ctx, f, h)
}

func (r *run) setDown(name string, down bool) {
	r.mu.Lock()
	r.down[name] = down
	r.mu.Unlock()
}

// boot starts a host again as its boot does: sshd; for a pull node the
// boot unit (certnode pull --boot --wait) before nginx, ordered as
// certnode-pull-boot.service is (Before=nginx.service); nginx; then its
// node timer.
func (r *run) boot(ctx context.Context, f *faultRec, h *testfleet.Host) error {
	defer r.setDown(h.Name, false)
	if err := h.StartSSH(ctx); err != nil {
		return err
	}
	var pullErr error
	if r.mode[h.Name] == "pull" {
		began := time.Now()
		pullErr = r.bootPull(ctx, h)
		f.Note = strings.TrimPrefix(f.Note+fmt.Sprintf("; boot pull took %s", time.Since(began).Round(100*time.Millisecond)), "; ")
	}
	return errors.Join(pullErr, h.StartNginx(ctx))
}

// newKey gives the host a new SSH host key. certpush must refuse it, and
// say so in deploy.log and its metrics; status shows the host left
// behind. The operator's action, trusting the new key after checking its
// fingerprint, ends the fault.
func (r *run) newKey(ctx context.Context, f *faultRec, h *testfleet.Host) error {
	f.Start = time.Now()
	f.Unreachable = true
	if err := h.ReplaceHostKey(ctx); err != nil {
		return err
	}
	before := r.latest()
	deadline := time.Now().Add(r.p.Lifetime)
	var rec *deployRecord
	for ctx.Err() == nil && time.Now().Before(deadline) && rec == nil {
		sleepCtx(ctx, time.Second)
		if cur := r.latest(); cur.FP != before.FP {
			rec = r.refused(h.Name, cur.FP[:16], f.Start)
		}
	}
	var problems []string
	if rec == nil {
		problems = append(problems, "no refused push of the renewed certificate in deploy.log")
	} else {
		f.Note = fmt.Sprintf("deploy.log: %s %q", rec.Result, firstSentence(rec.Error))
	}
	if v, ok := r.metricValue("certpush_host_aligned", h.Name); !ok || v != "0" {
		problems = append(problems, fmt.Sprintf("certpush_host_aligned for %s is %q, want 0", h.Name, v))
	}
	if v, ok := r.metricValue("certpush_hosts", `result="failed"`); !ok || v == "0" {
		problems = append(problems, fmt.Sprintf(`certpush_hosts{result="failed"} is %q, want at least 1`, v))
	}
	state, detail := r.statusOf(ctx, h.Name)
	f.Note += fmt.Sprintf("; status: %s, %s", state, firstSentence(detail))
	if state == "aligned" || state == "" || !strings.Contains(detail, "HOST KEY HAS CHANGED") {
		problems = append(problems, fmt.Sprintf("certpush status says %q (%s) for %s, want it behind for the changed host key", state, detail, h.Name))
	}
	fp := ssh.FingerprintSHA256(h.HostKey)
	cmd := exec.CommandContext(ctx, r.certpush, "--config", r.config, "trust", h.Name, "--fingerprint", fp)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput()
	r.appendLog("operator.log", "certpush trust "+h.Name+" --fingerprint "+fp, out)
	r.mu.Lock()
	r.ops = append(r.ops, fmt.Sprintf("%s: `certpush trust %s --fingerprint %s` after the host key changed (checked on the host)", time.Now().UTC().Format(time.TimeOnly), h.Name, fp))
	r.mu.Unlock()
	f.End = time.Now()
	if err != nil {
		problems = append(problems, fmt.Sprintf("certpush trust: %v: %s", err, out))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// deployRecord is a line of certpush's deploy.log.
type deployRecord struct {
	Time     time.Time `json:"time"`
	BundleID string    `json:"bundle_id"`
	Host     string    `json:"host"`
	Result   string    `json:"result"`
	Error    string    `json:"error"`
}

// refused finds a failed push of bundle id to host since, whose error
// names the host key.
func (r *run) refused(host, id string, since time.Time) *deployRecord {
	data, err := os.ReadFile(filepath.Join(r.stateDir, "deploy.log"))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		var d deployRecord
		if json.Unmarshal([]byte(line), &d) != nil {
			continue
		}
		if d.Host == host && d.BundleID == id && d.Result == "failed" && !d.Time.Before(since.Add(-time.Second)) &&
			strings.Contains(strings.ToUpper(d.Error), "HOST KEY") {
			return &d
		}
	}
	return nil
}

// metricValue returns the value of the first sample of name whose labels
// contain want (a host name is matched as host="NAME").
func (r *run) metricValue(name, want string) (string, bool) {
	data, err := os.ReadFile(r.metrics)
	if err != nil {
		return "", false
	}
	if !strings.Contains(want, "=") {
		want = `host="` + want + `"`
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, name+"{") && strings.Contains(line, want) {
			i := strings.LastIndexByte(line, ' ')
			return line[i+1:], true
		}
	}
	return "", false
}

// statusOf runs certpush status --json and returns the host's state.
func (r *run) statusOf(ctx context.Context, host string) (string, string) {
	cmd := exec.CommandContext(ctx, r.certpush, "--config", r.config, "status", "--json")
	cmd.Env = r.env
	out, _ := cmd.Output()
	r.appendLog("operator.log", "certpush status --json", out)
	var st struct {
		Endpoints []map[string]any `json:"endpoints"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", "unparsable status: " + err.Error()
	}
	for _, e := range st.Endpoints {
		if e["host"] == host {
			state, _ := e["state"].(string)
			detail, _ := e["error"].(string)
			if lp, ok := e["last_push_error"].(string); ok {
				detail += "last push error: " + lp
			}
			return state, detail
		}
	}
	return "", "host not in status"
}

func run1(argv ...string) error {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// firstSentence shortens an error for the report's table.
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i+1]
	}
	return s
}

// failedPushes counts the failed pushes to host in deploy.log between
// from and to, and returns the first one's error.
func (r *run) failedPushes(host string, from, to time.Time) (int, string) {
	data, err := os.ReadFile(filepath.Join(r.stateDir, "deploy.log"))
	if err != nil {
		return 0, ""
	}
	n, first := 0, ""
	for _, line := range strings.Split(string(data), "\n") {
		var d deployRecord
		if json.Unmarshal([]byte(line), &d) != nil || d.Host != host || d.Result != "failed" {
			continue
		}
		if d.Time.Before(from.Add(-time.Second)) || d.Time.After(to) {
			continue
		}
		if n == 0 {
			first = d.Error
		}
		n++
	}
	return n, first
}
