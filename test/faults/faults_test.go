package faults

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testnet"
)

// knownHostsWith writes a known_hosts file with a line for every fleet
// host (key overrides a host's key by name) and extra address -> key lines.
func (w *world) knownHostsWith(keys map[string]ssh.PublicKey, extra map[string]ssh.PublicKey) string {
	w.t.Helper()
	var lines []string
	for _, h := range w.fleet.Hosts {
		k := h.HostKey
		if o, ok := keys[h.Name]; ok {
			k = o
		}
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(h.SSHAddr())}, k))
	}
	for addr, k := range extra {
		lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k))
	}
	p := filepath.Join(w.dir, fmt.Sprintf("known_hosts.%d", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		w.t.Fatal(err)
	}
	return p
}

// viaProxy routes the push to h through a new proxy (known_hosts trusts
// h's key at the proxy's address too) and returns the proxy.
func (w *world) viaProxy(h *testfleet.Host, patch func(inv map[string]any)) *testnet.Proxy {
	w.t.Helper()
	p, err := testnet.NewProxy(h.SSHAddr())
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { p.Close() })
	kh := w.knownHostsWith(nil, map[string]ssh.PublicKey{p.Addr: h.HostKey})
	_, port, _ := strings.Cut(p.Addr, ":")
	portN, _ := strconv.Atoi(port)
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) {
		invSSH(inv)["known_hosts"] = kh
		invHost(inv, h.Name)["port"] = portN
		if patch != nil {
			patch(inv)
		}
	})
	return p
}

// certnodeRunning lists the pids of certnode processes working for h.
func certnodeRunning(h *testfleet.Host) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "certnode" && strings.Contains(string(cmdline), h.Dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitIdle waits until no certnode works for h (one whose SSH session
// was cut may still be finishing).
func waitIdle(t *testing.T, h *testfleet.Host) {
	t.Helper()
	poll(t, 30*time.Second, "certnode on "+h.Name+" to finish", func() bool { return len(certnodeRunning(h)) == 0 })
}

// leftovers lists upload directories left in h's incoming.
func leftovers(h *testfleet.Host) []string {
	entries, _ := os.ReadDir(filepath.Join(h.Incoming, certName))
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			out = append(out, filepath.Join(h.Incoming, certName, e.Name()))
		}
	}
	return out
}

// age makes upload directories look older than install.StaleUpload, as
// if the next run came much later.
func age(t *testing.T, dirs []string) {
	t.Helper()
	then := time.Now().Add(-install.StaleUpload - time.Minute)
	for _, d := range dirs {
		if err := os.Chtimes(d, then, then); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCutMidUpload cuts node-1's SSH connection at many points of a push
// (during the handshake, the transfer, certnode's run) with a proxy that
// resets both sides after N bytes from the client. An install: now host
// gets the bundle on certnode's standard input: a cut leaves nothing at
// all on it. An install: cron host gets an SFTP upload (and a rename): a
// cut may leave a temporary upload directory, never a key readable by
// others (check), and certnode's timer removes it later.
func TestCutMidUpload(t *testing.T) {
	for _, mode := range []string{"now", "cron"} {
		t.Run(mode, func(t *testing.T) { cutMidUpload(t, mode) })
	}
}

func cutMidUpload(t *testing.T, mode string) {
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	p := w.viaProxy(n1, func(inv map[string]any) { invHost(inv, n1.Name)["install"] = mode })
	done := map[string]string{"now": "installed", "cron": "uploaded"}[mode]
	timer := func() {
		t.Helper()
		if mode != "cron" {
			return
		}
		if code, _, _ := w.certnode(false, "--config", n1.CertnodeConfig, "install"); code != 0 {
			t.Fatalf("the timer's certnode install exited %d", code)
		}
	}

	fps := []string{w.importNew(devca.Leaf{})}
	code, res := w.push()
	if code != 0 || res[n1.Name].Result != done {
		t.Fatalf("push through the proxy: %d %+v", code, res)
	}
	timer()
	total := p.Sent()
	t.Logf("a whole push sends %d bytes to node-1", total)

	left := 0
	const cuts = 7
	for k := 1; k <= cuts; k++ {
		cut := total * int64(k) / (cuts + 1)
		p.CutAfter(cut)
		fp := w.importNew(devca.Leaf{})
		fps = append(fps, fp)
		_, res := w.push()
		if r := res[n2.Name]; r.Result != "installed" {
			t.Errorf("cut after %d bytes: %s (not cut) got %s %s", cut, n2.Name, r.Result, r.Error)
		}
		t.Logf("cut after %d of %d bytes: %s %s %s", cut, total, n1.Name, res[n1.Name].Result, res[n1.Name].Error)
		if r := res[n1.Name]; r.Result == "failed" && strings.Contains(r.Error, "may not let the push account run commands") {
			t.Errorf("cut after %d bytes: a lost connection explained as a refused command: %s", cut, r.Error)
		}
		waitIdle(t, n1)
		if l := leftovers(n1); len(l) > 0 {
			left++
			// What matters is the key inside (checkSecrets): the
			// directory may be cut off between its creation and its
			// chmod to 0700, before any file is written into it.
			for _, d := range l {
				if fi, err := os.Stat(d); err == nil {
					t.Logf("left behind: %s %v", d, fi.Mode())
				}
			}
		}
		w.check(checkOptions{allowed: fps})
	}
	if p.Cuts() < cuts {
		t.Errorf("%d connections cut, want at least %d", p.Cuts(), cuts)
	}
	switch {
	case mode == "now" && left > 0:
		t.Errorf("%d cuts left something behind on a host that gets the bundle on stdin", left)
	case mode == "cron" && left == 0:
		t.Errorf("no cut happened mid-upload: no upload directory was left behind")
	}
	// Much later, the connection is healthy again.
	p.CutAfter(0)
	age(t, leftovers(n1))
	if mode == "now" {
		w.converge(fps[len(fps)-1])
		return
	}
	if code, res := w.push(); code != 0 || res[n1.Name].Result != "uploaded" {
		t.Fatalf("push after the cuts: %d %+v", code, res)
	}
	timer()
	w.check(checkOptions{allowed: fps[len(fps)-1:], settled: true})
}

// TestUnresponsiveHost points node-2 at a port that accepts TCP and never
// answers: the push gives up on it within its timeouts, and the other
// hosts are not held up.
func TestUnresponsiveHost(t *testing.T) {
	w := newWorld(t, 3)
	n2 := w.fleet.Hosts[1]
	p := w.viaProxy(n2, func(inv map[string]any) {
		invSSH(inv)["connect_timeout"] = "2s"
		invSSH(inv)["timeout"] = "4s"
	})
	p.Blackhole(true)
	fp := w.importNew(devca.Leaf{})
	start := time.Now()
	code, res := w.push()
	took := time.Since(start)
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	for _, h := range w.fleet.Hosts {
		r := res[h.Name]
		if h == n2 {
			if r.Result != "failed" || !strings.Contains(r.Error, "timeout") && !strings.Contains(r.Error, "deadline") {
				t.Errorf("%s: %s %q, want a timeout failure", h.Name, r.Result, r.Error)
			}
			continue
		}
		if r.Result != "installed" {
			t.Errorf("%s: %s %s, want installed", h.Name, r.Result, r.Error)
		}
	}
	if took > 15*time.Second {
		t.Errorf("push took %s with a 2s connect timeout", took)
	}
	w.check(checkOptions{allowed: []string{fp}})
	p.Blackhole(false)
	w.writeInventory(testfleet.InventoryOptions{}, nil)
	w.converge(fp)
}

// mountTmpfs mounts a tmpfs of size bytes at dir, owned by the fleet
// user, holding what dir held; it is unmounted in cleanup. The returned
// function grows it.
func (w *world) mountTmpfs(dir string, size int) func() {
	w.t.Helper()
	requireRoot(w.t)
	testfleet.Require(w.t, "mount", "umount", "cp")
	saved := filepath.Join(w.t.TempDir(), "saved")
	if out, err := exec.Command("cp", "-a", dir, saved).CombinedOutput(); err != nil {
		w.t.Fatalf("save %s: %v: %s", dir, err, out)
	}
	opts := fmt.Sprintf("size=%d,mode=0755,uid=%d,gid=%d", size, w.fleet.UID, w.fleet.GID)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "certpush-faults", dir).CombinedOutput(); err != nil {
		w.t.Fatalf("mount tmpfs on %s: %v: %s", dir, err, out)
	}
	w.t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			w.t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	if out, err := exec.Command("cp", "-a", saved+"/.", dir).CombinedOutput(); err != nil {
		w.t.Fatalf("fill %s: %v: %s", dir, err, out)
	}
	return func() {
		if out, err := exec.Command("mount", "-o", "remount,size=4m", dir).CombinedOutput(); err != nil {
			w.t.Fatalf("grow tmpfs %s: %v: %s", dir, err, out)
		}
	}
}

// TestDiskFull fills node-1's disk during the upload (incoming) and
// during the install (the version directories).
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		dir   func(h *testfleet.Host) string
		size  int
		mode  string // node-1's install mode
		error string
	}{
		// The upload for the timer needs five pages, one per file.
		{"incoming", func(h *testfleet.Host) string { return h.Incoming }, 8 << 10, "cron", "upload"},
		// The installed version takes five pages; a new one does not fit.
		{"archive", func(h *testfleet.Host) string { return filepath.Join(h.Root, "archive", certName) }, 28 << 10, "now", "no space left"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			w := newWorld(t, 2)
			n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
			w.writeInventory(testfleet.InventoryOptions{Install: "now"}, func(inv map[string]any) { invHost(inv, n1.Name)["install"] = tc.mode })
			grow := w.mountTmpfs(tc.dir(n1), tc.size)
			fp := w.importNew(devca.Leaf{})
			code, res := w.push()
			if code != 1 || res[n1.Name].Result != "failed" || !strings.Contains(res[n1.Name].Error, tc.error) {
				t.Errorf("push exited %d, %s: %s %q, want failed with %q", code, n1.Name, res[n1.Name].Result, res[n1.Name].Error, tc.error)
			}
			if res[n2.Name].Result != "installed" {
				t.Errorf("%s: %s, want installed", n2.Name, res[n2.Name].Result)
			}
			// Nothing partial and nothing temporary is left on the full disk.
			w.check(checkOptions{allowed: []string{fp}, settled: true})
			grow()
			if tc.mode == "now" {
				w.converge(fp)
				return
			}
			if code, res := w.push(); code != 0 || res[n1.Name].Result != "uploaded" {
				t.Fatalf("push after the disk grew: %d %+v", code, res)
			}
			if code, _, _ := w.certnode(false, "--config", n1.CertnodeConfig, "install"); code != 0 {
				t.Fatalf("the timer's certnode install exited %d", code)
			}
			w.check(checkOptions{allowed: []string{fp}, settled: true})
		})
	}
}

// TestInstallNowNeedsNoIncoming: a host that installs at once gets the
// bundle on certnode's standard input, so a full (or read-only, or
// missing) incoming directory does not stop it.
func TestInstallNowNeedsNoIncoming(t *testing.T) {
	w := newWorld(t, 1)
	n1 := w.fleet.Hosts[0]
	w.mountTmpfs(n1.Incoming, 4<<10)
	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[n1.Name].Result != "installed" {
		t.Fatalf("push with incoming full: %d %+v", code, res)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})
}

// writeScript writes an executable shell script into a directory the
// fleet user may write in (so that it can leave marks there).
func (w *world) writeScript(name, body string) string {
	w.t.Helper()
	dir := filepath.Join(w.fleet.Dir, "faults")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	os.Chown(dir, w.fleet.UID, w.fleet.GID)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// TestServiceFailures breaks node-1's service side: the config test
// fails, the reload fails, or the reload does nothing so that the TLS
// check still sees the old certificate. Each time certnode rolls back,
// node-1 keeps serving the old certificate, and once the fault is gone a
// push converges.
func TestServiceFailures(t *testing.T) {
	w := newWorld(t, 2)
	n1 := w.fleet.Hosts[0]
	flag := filepath.Join(w.fleet.Dir, "faults", "reload.fail")
	failOnce := w.writeScript("reload-fails-once.sh", fmt.Sprintf(`if [ -e %[1]s ]; then rm -f %[1]s; echo "reload refused by the test" >&2; exit 1; fi
exec %[2]s
`, flag, shellQuote(n1.NginxReload)))
	for _, tc := range []struct {
		desc   string
		break_ func()
		fix    func()
		error  string
	}{
		{"config test fails", func() {
			if err := n1.BreakNginxConfig(); err != nil {
				t.Fatal(err)
			}
		}, func() {
			if err := n1.FixNginxConfig(); err != nil {
				t.Fatal(err)
			}
		}, "config test failed"},
		{"reload fails", func() {
			w.writeNodeConfig(n1, "", nodeDefaults{Reload: []string{failOnce}}, nil)
			if err := os.WriteFile(flag, nil, 0o666); err != nil {
				t.Fatal(err)
			}
		}, func() { w.writeNodeConfig(n1, "", nodeDefaults{}, nil) }, "reload refused by the test"},
		{"TLS check shows the old certificate", func() {
			w.writeNodeConfig(n1, "", nodeDefaults{Reload: []string{"/bin/true"}, VerifyTimeout: "1s"}, nil)
		}, func() { w.writeNodeConfig(n1, "", nodeDefaults{}, nil) }, "does not serve the new certificate"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			w.t = t
			before, err := n1.ServedFingerprint(context.Background(), "")
			if err != nil {
				t.Fatal(err)
			}
			tc.break_()
			fp := w.importNew(devca.Leaf{})
			code, res := w.push()
			r := res[n1.Name]
			if code != 1 || r.Result != "failed" || !strings.Contains(r.Error, "rolled_back") || !strings.Contains(r.Error, tc.error) {
				t.Errorf("push exited %d, %s: %s %q; want failed, rolled_back, %q", code, n1.Name, r.Result, r.Error, tc.error)
			}
			if got, _ := n1.ServedFingerprint(context.Background(), ""); got != before {
				t.Errorf("%s serves %.16s after the rollback, want the old %.16s", n1.Name, got, before)
			}
			w.check(checkOptions{allowed: []string{before, fp}, settled: true})
			tc.fix()
			w.converge(fp)
		})
	}
}

// TestHostKeys: a wrong key in known_hosts, and a host key that changes
// between two runs. Nothing is sent to such a host: it never sees a
// login.
func TestHostKeys(t *testing.T) {
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	refused := func(fp ...string) {
		t.Helper()
		logins, err := n1.Logins()
		if err != nil {
			t.Fatal(err)
		}
		code, res := w.push()
		if r := res[n1.Name]; code != 1 || r.Result != "failed" || !strings.Contains(r.Error, "HOST KEY HAS CHANGED") {
			t.Errorf("push exited %d, %s: %s %q; want a host key failure", code, n1.Name, r.Result, r.Error)
		}
		if r := res[n2.Name]; r.Result != "installed" {
			t.Errorf("%s: %s %s", n2.Name, r.Result, r.Error)
		}
		if after, _ := n1.Logins(); after != logins {
			t.Errorf("%s saw %d logins with a wrong host key", n1.Name, after-logins)
		}
		if l := leftovers(n1); len(l) > 0 {
			t.Errorf("something was uploaded: %v", l)
		}
		w.check(checkOptions{allowed: fp, settled: true})
	}

	kh := w.knownHostsWith(map[string]ssh.PublicKey{n1.Name: wrong}, nil)
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) { invSSH(inv)["known_hosts"] = kh })
	fp := w.importNew(devca.Leaf{})
	refused(fp)
	w.writeInventory(testfleet.InventoryOptions{}, nil)
	w.converge(fp)

	// The host is rebuilt with a new key; known_hosts still has the old.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n1.ReplaceHostKey(ctx); err != nil {
		t.Fatal(err)
	}
	fp2 := w.importNew(devca.Leaf{})
	refused(fp, fp2)
	// Once the new key is checked and trusted, the push converges.
	kh = w.knownHostsWith(nil, nil)
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) { invSSH(inv)["known_hosts"] = kh })
	w.converge(fp2)
}

// TestConcurrentInstalls runs the node's timer (certnode install) and a
// push at the same time: the lock makes one wait for the other, so their
// config tests and reloads never interleave.
func TestConcurrentInstalls(t *testing.T) {
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	spans := filepath.Join(w.fleet.Dir, "faults", "spans.log")
	wrap := func(name string, argv []string) string {
		return w.writeScript(name, fmt.Sprintf(`echo "start $PPID" >> %[1]s
%[2]s
status=$?
echo "end $PPID" >> %[1]s
exit $status
`, spans, shellQuote(argv)))
	}
	w.writeNodeConfig(h, "", nodeDefaults{Test: []string{wrap("test.sh", h.NginxTest)}, Reload: []string{wrap("reload.sh", h.NginxReload)}}, nil)

	// The timer's bundle is uploaded first, for install: cron.
	fpTimer := w.importNew(devca.Leaf{NotBefore: time.Now().Add(-time.Hour)})
	w.writeInventory(testfleet.InventoryOptions{Install: "cron"}, nil)
	if code, res := w.push(); code != 0 || res[h.Name].Result != "uploaded" {
		t.Fatalf("cron push: %d %+v", code, res)
	}
	idTimer, err := os.Readlink(filepath.Join(w.stateDir, "bundles", certName, "current"))
	if err != nil {
		t.Fatal(err)
	}
	fpPush := w.importNew(devca.Leaf{})
	w.writeInventory(testfleet.InventoryOptions{}, nil)

	// Hold the node's lock until both are waiting for it.
	lockPath := filepath.Join(h.Root, ".lock")
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	os.Chown(lockPath, w.fleet.UID, w.fleet.GID)
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var timerCode, pushCode int
	var pushRes map[string]hostResult
	wg.Go(func() {
		timerCode, _, _ = w.certnode(false, "--config", h.CertnodeConfig, "install", "--force", "--id", idTimer, certName)
	})
	poll(t, 30*time.Second, "the timer's certnode to wait", func() bool { return len(certnodeRunning(h)) == 1 })
	wg.Go(func() { pushCode, pushRes = w.push("--force") })
	poll(t, 30*time.Second, "both certnodes to wait for the lock", func() bool { return len(certnodeRunning(h)) == 2 })
	syscall.Flock(int(lf.Fd()), syscall.LOCK_UN)
	wg.Wait()

	// Both install, one after the other. Which one takes the lock first
	// is up to the kernel: when the timer's certnode goes second, its
	// (forced, older) certificate may replace the pushed one before
	// certpush's own TLS check, which then rightly reports that the host
	// does not serve the push.
	live, err := os.Readlink(filepath.Join(h.Root, "live", certName))
	if err != nil {
		t.Fatal(err)
	}
	timerLast := filepath.Base(live) == idTimer
	pushOK := pushCode == 0 && pushRes[h.Name].Result == "installed"
	if timerLast && !pushOK {
		pushOK = pushCode == 1 && strings.Contains(pushRes[h.Name].Error, "installed, but TLS check failed")
	}
	if timerCode != 0 || !pushOK {
		t.Errorf("timer exited %d, push %d (%+v), timer last: %v; want both to install", timerCode, pushCode, pushRes, timerLast)
	}
	// Each certnode's test and reload form one block: no interleaving.
	var order []string
	for _, line := range strings.Split(strings.TrimSpace(mustRead(t, spans)), "\n") {
		_, pid, _ := strings.Cut(line, " ")
		if len(order) == 0 || order[len(order)-1] != pid {
			order = append(order, pid)
		}
	}
	if len(order) != 2 {
		t.Errorf("test and reload runs of the two certnodes interleave: %s", mustRead(t, spans))
	}
	w.check(checkOptions{allowed: []string{fpTimer, fpPush}})
	w.converge(fpPush)
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
