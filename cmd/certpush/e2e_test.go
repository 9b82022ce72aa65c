package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/scripttest"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/rogpeppe/go-internal/testscript"
)

// certnodeBin is a certnode binary built once for the hosts of the tests;
// certpushBin is certpush, for programs that run it (certbot's hook).
var certnodeBin, certpushBin string

// TestMain runs certpush itself when a test script calls it, and the
// tests otherwise.
func TestMain(m *testing.M) {
	testscript.Main(withBinaries{m}, map[string]func(){
		"certpush": func() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// withBinaries builds the binaries the fleet tests need around the run.
type withBinaries struct{ m *testing.M }

func (w withBinaries) Run() int {
	bins, err := testfleet.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer bins.Remove()
	certnodeBin, certpushBin = bins.Certnode, bins.Certpush
	return w.m.Run()
}

// TestScripts runs testdata/script/*.txt: usage, exit codes, stderr and
// what a failed run leaves behind.
func TestScripts(t *testing.T) { scripttest.Run(t) }

const certName = "example.test"

var domains = []string{"example.test", "*.example.test"}

// world is a real fleet (sshd + nginx per host) and a certpush config
// that points at it.
type world struct {
	t        *testing.T
	fleet    *testfleet.Fleet
	config   string
	stateDir string
	ca       *devca.CA
}

func newWorld(t *testing.T, hosts int) *world {
	t.Helper()
	return newWorldFor(t, hosts, domains)
}

// newWorldFor makes a world whose certificate covers names.
func newWorldFor(t *testing.T, hosts int, names []string) *world {
	t.Helper()
	testfleet.Require(t, "/usr/sbin/sshd", "/usr/sbin/nginx", "/usr/lib/openssh/sftp-server")
	dir := t.TempDir()
	w := &world{t: t, config: filepath.Join(dir, "certpush.yaml"), stateDir: filepath.Join(dir, "state")}
	signer, err := bundle.LoadOrCreateSigner(w.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts:      hosts,
		CertName:   certName,
		Domains:    names,
		Certnode:   certnodeBin,
		TrustedKey: signer.PublicKey(),
		Logger:     testlog.AtLevel(t, slog.LevelInfo),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.fleet.Close() })
	if err := w.fleet.WriteInventory(w.config, testfleet.InventoryOptions{StateDir: w.stateDir}); err != nil {
		t.Fatal(err)
	}
	w.ca = w.fleet.CA
	return w
}

// certpush runs the command in process and returns its exit code and
// output.
func (w *world) certpush(args ...string) (int, string, string) {
	w.t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, append([]string{"--config", w.config}, args...), &stdout, &stderr)
	w.t.Logf("certpush %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// issue makes a certificate for the test domains and writes its files.
func (w *world) issue(l devca.Leaf) (*devca.Issued, [3]string) {
	w.t.Helper()
	if l.Domains == nil {
		l.Domains = domains
	}
	is, err := w.ca.Issue(l)
	if err != nil {
		w.t.Fatal(err)
	}
	dir := w.t.TempDir()
	var paths [3]string
	for i, f := range []struct {
		name string
		data []byte
	}{{"cert.pem", is.Cert}, {"chain.pem", is.Chain}, {"key.pem", is.Key}} {
		paths[i] = filepath.Join(dir, f.name)
		if err := os.WriteFile(paths[i], f.data, 0o600); err != nil {
			w.t.Fatal(err)
		}
	}
	return is, paths
}

// importNew issues a certificate and imports it; it returns the new
// bundle's fingerprint.
func (w *world) importNew() string {
	w.t.Helper()
	is, p := w.issue(devca.Leaf{})
	if code, _, _ := w.certpush("import", certName, "--cert", p[0], "--chain", p[1], "--key", p[2]); code != 0 {
		w.t.Fatalf("import exited %d", code)
	}
	return bundle.Fingerprint(is.Leaf)
}

// served returns each host's served fingerprint.
func (w *world) served() []string {
	w.t.Helper()
	var fps []string
	for _, h := range w.fleet.Hosts {
		fp, err := h.ServedFingerprint(context.Background(), "www.example.test")
		if err != nil {
			fp = "unreachable: " + err.Error()
		}
		fps = append(fps, fp)
	}
	return fps
}

func (w *world) wantServed(want ...string) {
	w.t.Helper()
	got := w.served()
	for i := range got {
		if got[i] != want[i] {
			w.t.Errorf("%s serves %.16s, want %.16s", w.fleet.Hosts[i].Name, got[i], want[i])
		}
	}
}

type pushOutput struct {
	Certs []struct {
		Cert     string `json:"cert"`
		BundleID string `json:"bundle_id"`
		Results  []struct {
			Host   string `json:"host"`
			Result string `json:"result"`
			Error  string `json:"error"`
		} `json:"results"`
	} `json:"certs"`
}

// pushJSON runs push --json and returns exit code and host -> result.
func (w *world) pushJSON(args ...string) (int, map[string]string, map[string]string) {
	w.t.Helper()
	return w.pushJSONCmd("push", args...)
}

// pushJSONCmd is pushJSON for any command that pushes (push, renew, sync).
func (w *world) pushJSONCmd(cmd string, args ...string) (int, map[string]string, map[string]string) {
	w.t.Helper()
	code, stdout, _ := w.certpush(append([]string{cmd, "--json"}, args...)...)
	var out pushOutput
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		w.t.Fatalf("push output is not JSON: %v", err)
	}
	results, errs := map[string]string{}, map[string]string{}
	for _, c := range out.Certs {
		for _, r := range c.Results {
			results[r.Host] = r.Result
			errs[r.Host] = r.Error
		}
	}
	return code, results, errs
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// trees lists every path under the hosts' certificate directories (root
// and incoming) with mode, size and link target, to compare before and
// after a run that must change nothing.
func (w *world) trees() string {
	w.t.Helper()
	var out []string
	for _, h := range w.fleet.Hosts {
		out = append(out, tree(w.t, h.Root), tree(w.t, h.Incoming))
	}
	return strings.Join(out, "\n")
}

func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		target, _ := os.Readlink(p)
		lines = append(lines, fmt.Sprintf("%s %v %d %v %s", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), target))
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestPushInstallsAndRerunIsUnchanged(t *testing.T) {
	w := newWorld(t, 3)
	fp := w.importNew()
	code, results, _ := w.pushJSON()
	if code != 0 {
		t.Fatalf("push exited %d", code)
	}
	for _, h := range w.fleet.Hosts {
		if results[h.Name] != "installed" {
			t.Errorf("%s: %q, want installed", h.Name, results[h.Name])
		}
	}
	w.wantServed(repeat(fp, 3)...)

	for _, h := range w.fleet.Hosts {
		// The installed key is private; staging keeps no key.
		live := filepath.Join(h.Root, "live", certName)
		fi, err := os.Stat(filepath.Join(live, "privkey.pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: installed key mode %v (%v), want 0600", h.Name, fi.Mode().Perm(), err)
		}
		keys, _ := filepath.Glob(filepath.Join(h.Incoming, certName, "*", "privkey.pem"))
		if len(keys) != 0 {
			t.Errorf("%s: keys left in incoming: %v", h.Name, keys)
		}
	}

	code, results, _ = w.pushJSON()
	if code != 0 {
		t.Fatalf("second push exited %d", code)
	}
	for _, h := range w.fleet.Hosts {
		if results[h.Name] != "unchanged" {
			t.Errorf("second push: %s: %q, want unchanged", h.Name, results[h.Name])
		}
	}

	log, err := os.ReadFile(filepath.Join(w.stateDir, "deploy.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "\n"); n != 6 {
		t.Errorf("deploy log has %d lines, want 6", n)
	}
}

func TestRotateAndDryRun(t *testing.T) {
	w := newWorld(t, 2)
	first := w.importNew()
	if code, _, _ := w.certpush("push"); code != 0 {
		t.Fatalf("push exited %d", code)
	}
	second := w.importNew()
	before := w.trees()
	code, results, _ := w.pushJSON("--dry-run")
	if code != 0 {
		t.Fatalf("dry run exited %d", code)
	}
	for _, h := range w.fleet.Hosts {
		if results[h.Name] != "would_push" {
			t.Errorf("dry run: %s: %q", h.Name, results[h.Name])
		}
	}
	if after := w.trees(); after != before {
		t.Errorf("dry run changed the hosts:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	w.wantServed(first, first)
	if code, _, _ := w.certpush("push"); code != 0 {
		t.Fatalf("push exited %d", code)
	}
	w.wantServed(second, second)
}

func TestHostKeysAreChecked(t *testing.T) {
	w := newWorld(t, 3)
	w.importNew()
	// Forget node-2's key, and give node-3 a new one.
	kh, err := os.ReadFile(w.fleet.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	unknown := w.fleet.Hosts[1]
	for _, line := range strings.Split(string(kh), "\n") {
		if !strings.Contains(line, fmt.Sprintf("]:%d ", unknown.SSHPort)) {
			keep = append(keep, line)
		}
	}
	if err := os.WriteFile(w.fleet.KnownHosts, []byte(strings.Join(keep, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	changed := w.fleet.Hosts[2]
	if err := changed.ReplaceHostKey(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, results, errs := w.pushJSON()
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	if results["node-1"] != "installed" {
		t.Errorf("node-1: %q, want installed", results["node-1"])
	}
	if results[unknown.Name] != "failed" || !strings.Contains(errs[unknown.Name], "is not in") || !strings.Contains(errs[unknown.Name], "SHA256:") || !strings.Contains(errs[unknown.Name], ">> "+w.fleet.KnownHosts) {
		t.Errorf("unknown host: %q %q", results[unknown.Name], errs[unknown.Name])
	}
	if results[changed.Name] != "failed" || !strings.Contains(errs[changed.Name], "HOST KEY HAS CHANGED") {
		t.Errorf("changed host: %q %q", results[changed.Name], errs[changed.Name])
	}
	for _, h := range []*testfleet.Host{unknown, changed} {
		entries, _ := os.ReadDir(h.Incoming)
		for _, e := range entries {
			if e.Name() != ".status" {
				t.Errorf("%s: %s landed in incoming", h.Name, e.Name())
			}
		}
		if fp, _ := h.ServedFingerprint(context.Background(), "example.test"); fp != h.BootstrapFingerprint {
			t.Errorf("%s: serves %.16s, want the old %.16s", h.Name, fp, h.BootstrapFingerprint)
		}
	}
}

func TestBadBundlesAreRefusedByNodes(t *testing.T) {
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	old := h.BootstrapFingerprint

	t.Run("tampered file", func(t *testing.T) {
		w.importNew()
		b, err := w.store().Current(certName)
		if err != nil {
			t.Fatal(err)
		}
		// The store is compromised after the bundle was made: the manifest
		// no longer matches, and the node must notice.
		chain := filepath.Join(b.Dir, bundle.ChainFile)
		os.Chmod(chain, 0o644)
		if err := os.WriteFile(chain, devca.PEM(w.ca.Root), 0o644); err != nil {
			t.Fatal(err)
		}
		code, results, errs := w.pushJSON()
		if code != 1 || results[h.Name] != "failed" || !strings.Contains(errs[h.Name], "refused") {
			t.Errorf("push: %d %q %q, want failed/refused", code, results[h.Name], errs[h.Name])
		}
		w.wantServed(old)
	})

	t.Run("untrusted signer", func(t *testing.T) {
		// A second management server with its own signing key.
		w.stateDir = filepath.Join(t.TempDir(), "other-state")
		cfg, err := os.ReadFile(w.config)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(t.TempDir(), "certpush.yaml")
		lines := strings.Split(string(cfg), "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "state_dir:") {
				lines[i] = "state_dir: " + w.stateDir
			}
		}
		os.WriteFile(other, []byte(strings.Join(lines, "\n")), 0o600)
		w.config = other
		w.importNew()
		code, results, errs := w.pushJSON()
		if code != 1 || results[h.Name] != "failed" || !strings.Contains(errs[h.Name], "untrusted") {
			t.Errorf("push: %d %q %q, want failed/untrusted key", code, results[h.Name], errs[h.Name])
		}
		w.wantServed(old)
	})
}

func (w *world) store() *bundle.Store {
	return &bundle.Store{Dir: filepath.Join(w.stateDir, "bundles")}
}

func TestMismatchRefusedAtImport(t *testing.T) {
	w := newWorld(t, 1)
	_, p := w.issue(devca.Leaf{})
	_, q := w.issue(devca.Leaf{})
	code, _, stderr := w.certpush("import", certName, "--cert", p[0], "--chain", p[1], "--key", q[2])
	if code == 0 || !strings.Contains(stderr, "private key does not match") {
		t.Errorf("import of a mismatched key: %d %q", code, stderr)
	}
	if _, err := w.store().Current(certName); err == nil {
		t.Error("a bundle was made from a mismatched key")
	}
	_, p = w.issue(devca.Leaf{Domains: []string{"other.test"}})
	code, _, stderr = w.certpush("import", certName, "--cert", p[0], "--chain", p[1], "--key", p[2])
	if code == 0 || !strings.Contains(stderr, "does not cover") {
		t.Errorf("import of a cert for other names: %d %q", code, stderr)
	}
}

func TestFailedConfigTestRollsBack(t *testing.T) {
	w := newWorld(t, 2)
	broken := w.fleet.Hosts[0]
	if err := broken.BreakNginxConfig(); err != nil {
		t.Fatal(err)
	}
	fp := w.importNew()
	code, results, errs := w.pushJSON()
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	if results[broken.Name] != "failed" || !strings.Contains(errs[broken.Name], "rolled_back") {
		t.Errorf("%s: %q %q, want failed after a rollback", broken.Name, results[broken.Name], errs[broken.Name])
	}
	if results["node-2"] != "installed" {
		t.Errorf("node-2: %q, want installed", results["node-2"])
	}
	w.wantServed(broken.BootstrapFingerprint, fp)
	target, err := os.Readlink(filepath.Join(broken.Root, "live", certName))
	if err != nil || !strings.HasSuffix(target, broken.BootstrapFingerprint[:16]) {
		t.Errorf("live link after rollback: %q %v", target, err)
	}

	// Once the config is fixed, the next push converges.
	if err := broken.FixNginxConfig(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := w.certpush("push"); code != 0 {
		t.Fatalf("push after the fix exited %d", code)
	}
	w.wantServed(fp, fp)
}

func TestDeadHostFailsAlone(t *testing.T) {
	w := newWorld(t, 3)
	dead := w.fleet.Hosts[1]
	if err := dead.StopSSH(); err != nil {
		t.Fatal(err)
	}
	fp := w.importNew()
	code, results, errs := w.pushJSON()
	if code != 1 {
		t.Errorf("push exited %d, want 1", code)
	}
	for _, h := range w.fleet.Hosts {
		want := "installed"
		if h == dead {
			want = "failed"
		}
		if results[h.Name] != want {
			t.Errorf("%s: %q (%s), want %s", h.Name, results[h.Name], errs[h.Name], want)
		}
	}
	if !strings.Contains(errs[dead.Name], "connect") {
		t.Errorf("dead host error %q does not say it could not connect", errs[dead.Name])
	}
	w.wantServed(fp, dead.BootstrapFingerprint, fp)
}

func TestCertbotHook(t *testing.T) {
	w := newWorld(t, 2)
	is, _ := w.issue(devca.Leaf{})
	// certbot's layout: live/<name>/*.pem are symlinks into archive/.
	le := t.TempDir()
	archive := filepath.Join(le, "archive", certName)
	live := filepath.Join(le, "live", certName)
	os.MkdirAll(archive, 0o700)
	os.MkdirAll(live, 0o755)
	for name, data := range map[string][]byte{"cert": is.Cert, "chain": is.Chain, "privkey": is.Key, "fullchain": append(append([]byte{}, is.Cert...), is.Chain...)} {
		if err := os.WriteFile(filepath.Join(archive, name+"1.pem"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "archive", certName, name+"1.pem"), filepath.Join(live, name+".pem")); err != nil {
			t.Fatal(err)
		}
	}

	t.Setenv("RENEWED_LINEAGE", "")
	if code, _, stderr := w.certpush("hook"); code != 2 || !strings.Contains(stderr, "RENEWED_LINEAGE") {
		t.Errorf("hook without RENEWED_LINEAGE: %d %q, want 2 and a message", code, stderr)
	}

	t.Setenv("RENEWED_LINEAGE", live)
	t.Setenv("RENEWED_DOMAINS", "example.test *.example.test")
	if code, _, _ := w.certpush("hook"); code != 0 {
		t.Fatalf("hook exited %d", code)
	}
	fp := bundle.Fingerprint(is.Leaf)
	w.wantServed(fp, fp)
	b, err := w.store().Current(certName)
	if err != nil {
		t.Fatal(err)
	}
	if b.Manifest.Source != bundle.SourceCertbot {
		t.Errorf("source %q, want certbot", b.Manifest.Source)
	}
	for _, f := range bundle.Files {
		fi, err := os.Lstat(filepath.Join(b.Dir, f))
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("bundle %s: %v %v, want a regular file", f, fi.Mode(), err)
		}
	}

	// The next renewal while node-2 is down: certbot ignores the hook's
	// exit status, so the hook says that sync retries the host, and sync
	// does.
	down := w.fleet.Hosts[1]
	if err := down.StopSSH(); err != nil {
		t.Fatal(err)
	}
	is2, _ := w.issue(devca.Leaf{})
	for name, data := range map[string][]byte{"cert": is2.Cert, "chain": is2.Chain, "privkey": is2.Key, "fullchain": append(append([]byte{}, is2.Cert...), is2.Chain...)} {
		if err := os.WriteFile(filepath.Join(archive, name+"2.pem"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(live, name+".pem")
		os.Remove(link)
		if err := os.Symlink(filepath.Join("..", "..", "archive", certName, name+"2.pem"), link); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := w.certpush("hook")
	if code != 1 || !strings.Contains(stderr, "certbot does not retry them: 'certpush sync' from a timer does") {
		t.Errorf("hook with %s down: %d %q; want 1 and where the retry comes from", down.Name, code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := down.StartSSH(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := w.certpush("sync"); code != 0 {
		t.Fatalf("sync after %s came back: %d %s", down.Name, code, stderr)
	}
	fp2 := bundle.Fingerprint(is2.Leaf)
	w.wantServed(fp2, fp2)
}
