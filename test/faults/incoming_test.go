package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/testfleet"
)

// TestIncomingRedirect gives the push account an incoming directory in a
// directory it owns (its home, say), as root's certnode must refuse: the
// account could swap incoming for a symlink to any of root's directories.
// certnode refuses, naming the parent, while the account owns it and
// while incoming is a symlink, and touches nothing where the symlink
// points; once the parent is root's and incoming a real directory, it
// installs.
func TestIncomingRedirect(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	srv := srvDir(t)
	home := filepath.Join(srv, "home")
	incoming := filepath.Join(home, "incoming")
	for _, d := range []string{home, incoming} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, w.fleet.UID, w.fleet.GID); err != nil {
			t.Fatal(err)
		}
	}
	config := w.rootNode(h, srv, incoming)
	w.writeInventory(testfleet.InventoryOptions{Install: "cron"}, func(inv map[string]any) { invHost(inv, h.Name)["incoming"] = incoming })
	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "uploaded" {
		t.Fatalf("push: %d %+v", code, res)
	}

	rootInstall := func() (int, string) {
		code, stdout, stderr := w.certnode(true, "--config", config, "install", "--json")
		return code, stdout + stderr
	}
	code, out := rootInstall()
	if code == 0 || !strings.Contains(out, "parent "+home+" is writable by uid "+fmt.Sprint(w.fleet.UID)) || !strings.Contains(out, "make every parent of incoming root-owned") {
		t.Errorf("incoming in the account's directory: exit %d %q; want refused naming %s", code, out, home)
	}

	// The account swaps incoming for a symlink to a directory of root's.
	victim := filepath.Join(srv, "victim")
	keep := filepath.Join(victim, certName, "keep")
	if err := os.MkdirAll(filepath.Dir(keep), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	asAccount := func(args ...string) {
		t.Helper()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = fleetCred(w)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v as the push account: %v: %s", args, err, out)
		}
	}
	asAccount("mv", incoming, incoming+".real")
	asAccount("ln", "-s", victim, incoming)
	for _, owner := range []int{w.fleet.UID, 0} {
		if err := os.Chown(home, owner, 0); err != nil {
			t.Fatal(err)
		}
		code, out := rootInstall()
		if code == 0 || !strings.Contains(out, incoming) {
			t.Errorf("parent owned by %d, incoming a symlink: exit %d %q; want refused", owner, code, out)
		}
		if owner == 0 && !strings.Contains(out, "is a symlink") {
			t.Errorf("root-owned parent, incoming a symlink: %q; want it to say so", out)
		}
		entries, _ := os.ReadDir(victim)
		if _, err := os.Stat(keep); err != nil || len(entries) != 1 {
			t.Errorf("the symlink's target was changed: %v, %d entries", err, len(entries))
		}
	}

	// Fixed: a root-owned parent, incoming a real directory.
	os.Remove(incoming)
	if err := os.Rename(incoming+".real", incoming); err != nil {
		t.Fatal(err)
	}
	if code, out := rootInstall(); code != 0 {
		t.Fatalf("root-owned parent: exit %d %q; want installed", code, out)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true, incoming: map[string]string{h.Name: incoming}})
}

// forcedNode sets h up with the least privilege of install: now: the push
// key limited to hooks/certnode-forced-command, certnode run as root
// through sudo (hooks/sudoers.certnode). It returns the root-owned
// certnode binary and config.
func (w *world) forcedNode(h *testfleet.Host) (bin, config string) {
	t := w.t
	t.Helper()
	testfleet.Require(t, "sudo", "visudo")
	srv := srvDir(t)
	config = w.rootNode(h, srv, h.Incoming)
	bin = filepath.Join(srv, "certnode")
	wrapper := filepath.Join(srv, "certnode-forced-command")
	if out, err := exec.Command("cp", "../../hooks/certnode-forced-command", wrapper).CombinedOutput(); err != nil {
		t.Fatalf("copy wrapper: %v: %s", err, out)
	}
	line := mustRead(t, "../../hooks/sudoers.certnode")
	line = strings.ReplaceAll(line, "/usr/local/bin/certnode", bin)
	line = strings.ReplaceAll(line, `/etc/certnode/certnode\.yaml`, strings.ReplaceAll(config, ".", `\.`))
	line = strings.ReplaceAll(line, "certsync ALL", testfleet.FleetUser+" ALL")
	sudoers := filepath.Join("/etc/sudoers.d", "certpush-faults-"+filepath.Base(srv)[len("certpush-faults-"):])
	if err := os.WriteFile(sudoers, []byte(line), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })
	if out, err := exec.Command("visudo", "-cf", sudoers).CombinedOutput(); err != nil {
		t.Fatalf("visudo: %v: %s", err, out)
	}
	pub := strings.TrimSpace(mustRead(t, w.fleet.Identity+".pub"))
	ak := fmt.Sprintf("restrict,command=\"%s --certnode %s --config %s\" %s\n", wrapper, bin, config, pub)
	if err := os.WriteFile(filepath.Join(h.Dir, "ssh", "authorized_keys"), []byte(ak), 0o644); err != nil {
		t.Fatal(err)
	}
	// The command the shipped example inventory recommends.
	command := exampleCommand(t)
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) { invHost(inv, h.Name)["command"] = command })
	return bin, config
}

// exampleCommand is ssh.command of the shipped inventory/certpush.yaml.
func exampleCommand(t *testing.T) string {
	t.Helper()
	var ex struct {
		SSH struct {
			Command string `yaml:"command"`
		} `yaml:"ssh"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, "../../inventory/certpush.yaml")), &ex); err != nil || ex.SSH.Command == "" {
		t.Fatalf("inventory/certpush.yaml: ssh.command: %q, %v", ex.SSH.Command, err)
	}
	return ex.SSH.Command
}

// restartSSH writes h's sshd_config, checks it with sshd -t and restarts
// sshd with it.
func restartSSH(t *testing.T, h *testfleet.Host, config string) {
	t.Helper()
	if err := os.WriteFile(h.SSHConfig, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testfleet.SSHD, "-t", "-f", h.SSHConfig).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t: %v: %s\n%s", err, out, config)
	}
	if err := h.StopSSH(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.StartSSH(ctx); err != nil {
		t.Fatal(err)
	}
}

// keysIn lists private key files under h's incoming/<name>.
func keysIn(h *testfleet.Host) []string {
	var out []string
	filepath.WalkDir(filepath.Join(h.Incoming, certName), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == bundle.KeyFile {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestNoStrayKeyCopies: through the forced command, a push with --force
// is refused before certnode runs; certpush removes its upload, so no
// copy of the key stays in incoming. A complete upload that no run
// installed is removed by the next run once older than
// install.StaleBundle.
func TestNoStrayKeyCopies(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	w.forcedNode(h)

	w.importNew(devca.Leaf{})
	code, res := w.push("--force")
	if code == 0 || res[h.Name].Result != "failed" || !strings.Contains(res[h.Name].Error, "refused") {
		t.Errorf("push --force through the forced command: %d %+v; want refused", code, res)
	}
	if keys := keysIn(h); len(keys) != 0 {
		t.Errorf("refused push left key copies in incoming: %v", keys)
	}

	// An upload no run installed (a push whose connection broke after
	// the rename, say), an hour old.
	c := w.sshClient(h)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	mat, m := w.issue(devca.Leaf{NotBefore: time.Now().Add(-2 * time.Hour)}, w.signer)
	upload(t, sc, h.Incoming, m.ID, mat, m, nil)
	stale := filepath.Join(h.Incoming, certName, m.ID)
	then := time.Now().Add(-install.StaleBundle - time.Minute)
	if err := os.Chtimes(stale, then, then); err != nil {
		t.Fatal(err)
	}
	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "installed" {
		t.Fatalf("push: %d %+v", code, res)
	}
	if keys := keysIn(h); len(keys) != 0 {
		t.Errorf("key copies left in incoming after an install: %v", keys)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})
}

// TestConcurrentPushes runs two certpush at once, each with its own state
// directory holding the same bundle and signing key (so no management
// lock keeps them apart), to the same hosts: both uploads land in the
// same <incoming>/<name>/<id>. Both succeed (installed, or unchanged for
// the second), and neither reports a malformed bundle.
func TestConcurrentPushes(t *testing.T) {
	w := newWorld(t, 2)
	for round := range 3 {
		fp := w.importNew(devca.Leaf{})
		state2 := filepath.Join(w.dir, fmt.Sprintf("state-%d", round))
		if out, err := exec.Command("cp", "-a", w.stateDir, state2).CombinedOutput(); err != nil {
			t.Fatalf("copy state: %v: %s", err, out)
		}
		config2 := filepath.Join(w.dir, fmt.Sprintf("certpush-%d.yaml", round))
		data := strings.ReplaceAll(mustRead(t, w.config), w.stateDir, state2)
		if err := os.WriteFile(config2, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		codes, outs := make([]int, 2), make([]string, 2)
		for i, config := range []string{w.config, config2} {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, certpushBin, "--config", config, "-vv", "push")
				cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				codes[i], outs[i] = exitCode(t, err), out.String()
				w.record(out.Bytes())
			})
		}
		wg.Wait()
		for i := range codes {
			if codes[i] != 0 || strings.Contains(outs[i], "malformed") {
				t.Errorf("round %d, push %d: exit %d, want 0 and no malformed bundle:\n%s", round, i, codes[i], tailString(outs[i], 3000))
			}
		}
		w.check(checkOptions{allowed: []string{fp}, settled: true})
		for _, h := range w.fleet.Hosts {
			if keys := keysIn(h); len(keys) != 0 {
				t.Errorf("round %d: key copies left in %s's incoming: %v", round, h.Name, keys)
			}
		}
	}
}

// TestForcedCommandNoSFTP: with --no-sftp in authorized_keys the push
// account has one thing left, root's certnode install with the bundle on
// its standard input. An install: now push works with incoming owned by
// root (the account can write nowhere), and SFTP is refused.
func TestForcedCommandNoSFTP(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	w.forcedNode(h)
	ak := filepath.Join(h.Dir, "ssh", "authorized_keys")
	line := mustRead(t, ak)
	if err := os.WriteFile(ak, []byte(strings.Replace(line, ` --certnode `, ` --no-sftp --certnode `, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(h.Incoming, 0, 0); err != nil {
		t.Fatal(err)
	}
	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "installed" {
		t.Fatalf("push through the forced command with --no-sftp: %d %+v", code, res)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "unchanged" {
		t.Errorf("second push: %d %+v, want unchanged", code, res)
	}
	c := w.sshClient(h)
	if sc, err := sftp.NewClient(c); err == nil {
		sc.Close()
		t.Error("SFTP started for a key with --no-sftp")
	}
}
