package faults

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
)

// TestImportDiskFull fills the management server's bundle store during an
// import: the error says what happened (the write failed for lack of
// space), not that the certificate was refused, and no partial bundle is
// left behind.
func TestImportDiskFull(t *testing.T) {
	requireRoot(t)
	testfleet.Require(t, "mount", "umount")
	dir := t.TempDir()
	bundles := filepath.Join(dir, "state", "bundles")
	if err := os.MkdirAll(bundles, 0o700); err != nil {
		t.Fatal(err)
	}
	// Three pages: the first bundle files fit, the rest do not.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12k,mode=0700", "certpush-faults", bundles).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", bundles, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", bundles).Run() })
	ca, err := devca.New("disk full")
	if err != nil {
		t.Fatal(err)
	}
	roots := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(roots, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "certpush.yaml")
	yaml := fmt.Sprintf("state_dir: %s\nroots: %s\nhosts:\n  web1: {address: 127.0.0.1}\ncerts:\n  %s:\n    domains: [%q, %q]\n    hosts: [web1]\n",
		filepath.Join(dir, "state"), roots, certName, domains[0], domains[1])
	if err := os.WriteFile(config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(devca.Leaf{Domains: domains})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"cert.pem": is.Cert, "chain.pem": is.Chain, "key.pem": is.Key}
	for n, data := range files {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(certpushBin, "--config", config, "import", certName,
		"--cert", filepath.Join(dir, "cert.pem"), "--chain", filepath.Join(dir, "chain.pem"), "--key", filepath.Join(dir, "key.pem"))
	out, err := cmd.CombinedOutput()
	code := exitCode(t, err)
	if code != 1 || !strings.Contains(string(out), "write bundle: ") || !strings.Contains(string(out), "no space left on device") || strings.Contains(string(out), "refused") {
		t.Errorf("import on a full disk exited %d: %s\nwant 1 and 'write bundle: ... no space left on device', not 'refused'", code, out)
	}
	// Nothing partial: no bundle directory, no temporary one, no current.
	left, err := os.ReadDir(filepath.Join(bundles, certName))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left in the store: %s", e.Name())
	}
}

// TestConcurrentRunsShareStateDir runs two pushes at once on one state
// directory: the second waits for the first (the state directory's
// lock), then finds every host up to date. Neither fails, and nothing
// reads like tampering. With --no-wait the second fails at once and
// names the holder.
func TestConcurrentRunsShareStateDir(t *testing.T) {
	testfleet.Require(t, "flock")
	w := newWorld(t, 3)
	fp := w.importNew(devca.Leaf{})
	type run struct {
		code           int
		stdout, stderr string
	}
	runs := make(chan run, 2)
	for range 2 {
		go func() {
			code, stdout, stderr := w.certpush("push", "--json")
			runs <- run{code, stdout, stderr}
		}()
	}
	installed := 0
	for range 2 {
		r := <-runs
		if r.code != 0 {
			t.Errorf("concurrent push exited %d:\n%s\n%s", r.code, r.stdout, tailString(r.stderr, 2000))
		}
		if strings.Contains(r.stdout+r.stderr, "malformed") || strings.Contains(r.stdout+r.stderr, "refused") {
			t.Errorf("concurrent push reports a refusal:\n%s\n%s", r.stdout, tailString(r.stderr, 2000))
		}
		installed += strings.Count(r.stdout, `"result": "installed"`)
	}
	if installed != len(w.fleet.Hosts) {
		t.Errorf("%d installs over both runs, want %d (each host once)", installed, len(w.fleet.Hosts))
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})

	// A run holding the lock: --no-wait fails at once, naming it.
	lockPath := filepath.Join(w.stateDir, ".lock")
	holder := exec.Command("flock", lockPath, "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	// flock(1) does not write its pid: wait until the lock is taken.
	for i := 0; ; i++ {
		if err := exec.Command("flock", "-n", lockPath, "true").Run(); err != nil {
			break
		}
		if i == 100 {
			t.Fatal("flock(1) did not take the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, _, stderr := w.certpush("push", "--no-wait")
	if code != 1 || !strings.Contains(stderr, "state directory "+w.stateDir+" is in use by another certpush run") {
		t.Errorf("push --no-wait while locked exited %d: %s", code, tailString(stderr, 2000))
	}
}

// TestNodeWithoutTrustedKeys pushes to a node whose certnode.yaml trusts
// no signing key: certnode refuses to run at all (it would install any
// bundle), the push fails for that host naming the setting, the host keeps
// serving its certificate, and the other host installs. With
// allow_unsigned: true set on purpose the node installs (its warning is
// checked in cmd/certnode/testdata/script/config.txt).
func TestNodeWithoutTrustedKeys(t *testing.T) {
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	w.writeNodeConfig(n1, "", nodeDefaults{}, func(c *nodeConfig) { c.TrustedKeys = nil })
	fp := w.importNew(devca.Leaf{})
	code, res := w.push()
	if code != 1 || res[n1.Name].Result != "failed" || !strings.Contains(res[n1.Name].Error, "trusted_keys: no signing key is trusted") {
		t.Errorf("push exited %d, %s: %s %q; want failed naming trusted_keys", code, n1.Name, res[n1.Name].Result, res[n1.Name].Error)
	}
	if res[n2.Name].Result != "installed" {
		t.Errorf("%s: %s, want installed", n2.Name, res[n2.Name].Result)
	}
	if got, err := n1.ServedFingerprint(t.Context(), "www."+certName); err != nil || got == fp {
		t.Errorf("%s serves %.16s (%v), want its old certificate", n1.Name, got, err)
	}
	cfg, err := os.ReadFile(n1.CertnodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n1.CertnodeConfig, append(cfg, "allow_unsigned: true\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	w.converge(fp)
}

// TestPushAccountShellPrints gives node-1's push account what a nologin
// shell or a chatty ~/.bashrc gives it: text where certnode should
// answer. The push fails for that host with an error saying so in plain
// words, and the other host installs.
func TestPushAccountShellPrints(t *testing.T) {
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	pub := strings.TrimSpace(mustRead(t, w.fleet.Identity+".pub"))
	line := `command="echo This account is currently not available." ` + pub + "\n"
	if err := os.WriteFile(filepath.Join(n1.Dir, "ssh", "authorized_keys"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	w.importNew(devca.Leaf{})
	code, res := w.push()
	if r := res[n1.Name]; code != 1 || r.Result != "failed" || !strings.Contains(r.Error, "This account is currently not available") || !strings.Contains(r.Error, "nologin") {
		t.Errorf("push exited %d, %s: %s %q; want failed, explaining the shell", code, n1.Name, r.Result, r.Error)
	}
	if res[n2.Name].Result != "installed" {
		t.Errorf("%s: %s, want installed", n2.Name, res[n2.Name].Result)
	}
}

// TestHostInstallModeOverrides pushes one certificate to a host that
// installs at once and to one whose inventory entry says install: cron:
// the first installs, the second gets the upload for its timer, and the
// timer's certnode run installs it.
func TestHostInstallModeOverrides(t *testing.T) {
	w := newWorld(t, 2)
	now, cron := w.fleet.Hosts[0], w.fleet.Hosts[1]
	w.writeInventory(testfleet.InventoryOptions{Install: "now"}, func(inv map[string]any) { invHost(inv, cron.Name)["install"] = "cron" })
	fp := w.importNew(devca.Leaf{})
	code, res := w.push()
	if code != 0 || res[now.Name].Result != "installed" || res[cron.Name].Result != "uploaded" {
		t.Fatalf("push: %d %+v; want %s installed, %s uploaded", code, res, now.Name, cron.Name)
	}
	if code, _, _ := w.certnode(false, "--config", cron.CertnodeConfig, "install"); code != 0 {
		t.Fatalf("the timer's certnode install exited %d", code)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})
}

// TestHostsFlag narrows a push with --hosts: only the named host is
// pushed, it keeps its wave label (rest, not canary: node-1 is the
// canary), the table is shown, and a name that is no host of the
// certificate is refused before anything is pushed.
func TestHostsFlag(t *testing.T) {
	w := newWorld(t, 3)
	n1, n3 := w.fleet.Hosts[0], w.fleet.Hosts[2]
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) {
		inv["certs"].(map[string]any)[certName].(map[string]any)["canary"] = []string{n1.Name}
	})
	w.importNew(devca.Leaf{})
	code, res := w.push("--hosts", n3.Name)
	if code != 0 || len(res) != 1 || res[n3.Name].Result != "installed" || res[n3.Name].Wave != "rest" {
		t.Errorf("push --hosts %s: %d %+v; want only %s, installed, wave rest", n3.Name, code, res, n3.Name)
	}
	code, _, stderr := w.certpush("push", "--hosts", "nosuch,"+n3.Name)
	if code != 2 || !strings.Contains(stderr, "--hosts: nosuch: not a host of "+certName) {
		t.Errorf("push --hosts nosuch: %d %q", code, stderr)
	}
	code, res = w.push("--hosts", n1.Name)
	if code != 0 || len(res) != 1 || res[n1.Name].Wave != "canary" {
		t.Errorf("push --hosts %s: %d %+v; want the canary, labelled canary", n1.Name, code, res)
	}
}
