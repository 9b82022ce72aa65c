package faults

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testlog"
)

// Binaries built once for the whole suite.
var certnodeBin, certpushBin string

func TestMain(m *testing.M) {
	bins, err := testfleet.BuildBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	certnodeBin, certpushBin = bins.Certnode, bins.Certpush
	code := m.Run()
	bins.Remove()
	os.Exit(code)
}

const certName = "example.test"

var domains = []string{"example.test", "*.example.test"}

// world is a real fleet and a certpush management config pointing at it.
// Every certpush and certnode run's output is kept in logs, and every
// private key issued in keys, so that each test can check that no key
// ever reached a log.
type world struct {
	t        *testing.T
	fleet    *testfleet.Fleet
	dir      string
	config   string
	stateDir string
	signer   *bundle.Signer
	ca       *devca.CA
	// secretDirs are walked for readable private keys, besides the
	// fleet's directory and the state directory.
	secretDirs []string
	// keyGroup is a group that may read private keys (the service's
	// group in the root-owned setups); -1 for none.
	keyGroup int

	mu   sync.Mutex
	logs bytes.Buffer
	keys [][]byte
}

func requireFleet(t *testing.T) {
	t.Helper()
	testfleet.Require(t, testfleet.SSHD, testfleet.Nginx, testfleet.SFTPServer)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test needs root (mounts, other accounts)")
		}
		t.Skip("this test needs root (mounts, other accounts)")
	}
}

func newWorld(t *testing.T, hosts int) *world {
	t.Helper()
	requireFleet(t)
	dir := t.TempDir()
	w := &world{t: t, dir: dir, config: filepath.Join(dir, "certpush.yaml"), stateDir: filepath.Join(dir, "state"), keyGroup: -1}
	var err error
	if w.signer, err = bundle.LoadOrCreateSigner(w.stateDir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	w.fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts:      hosts,
		CertName:   certName,
		Domains:    domains,
		Certnode:   certnodeBin,
		TrustedKey: w.signer.PublicKey(),
		Signer:     w.signer,
		Logger:     testlog.AtLevel(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.fleet.Close() })
	w.ca = w.fleet.CA
	w.writeInventory(testfleet.InventoryOptions{}, nil)
	return w
}

// writeInventory writes the management config; patch may change the
// decoded YAML (e.g. a host's port) before it is written.
func (w *world) writeInventory(opts testfleet.InventoryOptions, patch func(inv map[string]any)) {
	w.t.Helper()
	opts.StateDir = w.stateDir
	if err := w.fleet.WriteInventory(w.config, opts); err != nil {
		w.t.Fatal(err)
	}
	if patch == nil {
		return
	}
	data, err := os.ReadFile(w.config)
	if err != nil {
		w.t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(data, &inv); err != nil {
		w.t.Fatal(err)
	}
	patch(inv)
	if data, err = yaml.Marshal(inv); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(w.config, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// invHost returns a host's entry of a decoded inventory.
func invHost(inv map[string]any, name string) map[string]any {
	return inv["hosts"].(map[string]any)[name].(map[string]any)
}

func invSSH(inv map[string]any) map[string]any { return inv["ssh"].(map[string]any) }

// nodeConfig is a certnode.yaml for one host.
type nodeConfig struct {
	Root         string                    `yaml:"root"`
	Incoming     string                    `yaml:"incoming"`
	TrustedKeys  []string                  `yaml:"trusted_keys"`
	Roots        string                    `yaml:"roots,omitempty"`
	Keep         int                       `yaml:"keep"`
	Timeout      string                    `yaml:"timeout"`
	Lock         string                    `yaml:"lock,omitempty"`
	DefaultsYAML map[string]any            `yaml:"defaults"`
	Certs        map[string]map[string]any `yaml:"certs"`
}

type nodeDefaults struct {
	Test, Reload, Verify []string
	VerifyTimeout        string
	Group, KeyMode       string
}

// writeNodeConfig writes a certnode.yaml for h at path ("" for the
// host's own) with the fleet's layout and d's settings (nginx's test and
// reload when d leaves them empty).
func (w *world) writeNodeConfig(h *testfleet.Host, path string, d nodeDefaults, change func(*nodeConfig)) string {
	w.t.Helper()
	if path == "" {
		path = h.CertnodeConfig
	}
	if d.Test == nil {
		d.Test = h.NginxTest
	}
	if d.Reload == nil {
		d.Reload = h.NginxReload
	}
	if d.Verify == nil {
		d.Verify = []string{h.TLSAddr()}
	}
	if d.VerifyTimeout == "" {
		d.VerifyTimeout = "5s"
	}
	c := nodeConfig{
		Root:        h.Root,
		Incoming:    h.Incoming,
		TrustedKeys: []string{w.signer.PublicKey()},
		Roots:       w.fleet.Roots,
		Keep:        3,
		Timeout:     "20s",
		Certs:       map[string]map[string]any{certName: {"domains": domains}},
	}
	if change != nil {
		change(&c)
	}
	c.DefaultsYAML = map[string]any{
		"test":           d.Test,
		"reload":         d.Reload,
		"verify":         d.Verify,
		"verify_timeout": d.VerifyTimeout,
	}
	if d.Group != "" {
		c.DefaultsYAML["group"] = d.Group
	}
	if d.KeyMode != "" {
		c.DefaultsYAML["key_mode"] = d.KeyMode
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		w.t.Fatal(err)
	}
	return path
}

func (w *world) trusted() []ed25519.PublicKey {
	w.t.Helper()
	k, err := bundle.ParsePublicKey(w.signer.PublicKey())
	if err != nil {
		w.t.Fatal(err)
	}
	return []ed25519.PublicKey{k}
}

func (w *world) record(b []byte) {
	w.mu.Lock()
	w.logs.Write(b)
	w.mu.Unlock()
}

// certpush runs the certpush binary with -v and returns its exit code,
// stdout and stderr.
func (w *world) certpush(args ...string) (int, string, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, certpushBin, append([]string{"--config", w.config, "-vv"}, args...)...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := exitCode(w.t, err)
	w.record(stdout.Bytes())
	w.record(stderr.Bytes())
	w.t.Logf("certpush %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), tailString(stderr.String(), 3000))
	return code, stdout.String(), stderr.String()
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

// certnode runs the certnode binary on the host's behalf (as the fleet
// user, like a timer of the push account, or as root when asRoot) with
// -v, and returns its exit code, stdout and stderr.
func (w *world) certnode(asRoot bool, args ...string) (int, string, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.t.Context(), time.Minute)
	defer cancel()
	cmd := w.certnodeCmd(ctx, asRoot, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := exitCode(w.t, err)
	w.record(stdout.Bytes())
	w.record(stderr.Bytes())
	w.t.Logf("certnode %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), tailString(stderr.String(), 3000))
	return code, stdout.String(), stderr.String()
}

func (w *world) certnodeCmd(ctx context.Context, asRoot bool, args ...string) *exec.Cmd {
	bin := w.fleet.Certnode
	cmd := exec.CommandContext(ctx, bin, append([]string{"-vv"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if !asRoot && os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.fleet.UID), Gid: uint32(w.fleet.GID)}}
	}
	return cmd
}

// leaf issues a certificate (for the test domains unless l names others)
// and records its key, which no log may ever contain.
func (w *world) leaf(l devca.Leaf) *devca.Issued {
	w.t.Helper()
	if l.Domains == nil {
		l.Domains = domains
	}
	is, err := w.ca.Issue(l)
	if err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.keys = append(w.keys, is.Key)
	w.mu.Unlock()
	return is
}

// importNew issues a certificate (valid from nb, zero for now) and
// imports it as the current bundle; it returns its fingerprint.
func (w *world) importNew(l devca.Leaf) string {
	w.t.Helper()
	is := w.leaf(l)
	dir := w.t.TempDir()
	paths := map[string][]byte{"cert.pem": is.Cert, "chain.pem": is.Chain, "key.pem": is.Key}
	for n, data := range paths {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
			w.t.Fatal(err)
		}
	}
	code, _, _ := w.certpush("import", certName, "--cert", filepath.Join(dir, "cert.pem"),
		"--chain", filepath.Join(dir, "chain.pem"), "--key", filepath.Join(dir, "key.pem"))
	if code != 0 {
		w.t.Fatalf("import exited %d", code)
	}
	os.RemoveAll(dir)
	return bundle.Fingerprint(is.Leaf)
}

// issue makes material (and a manifest, signed by signer unless nil) for
// the test domains without importing it.
func (w *world) issue(l devca.Leaf, signer *bundle.Signer) (*bundle.Material, *bundle.Manifest) {
	w.t.Helper()
	return w.material(w.leaf(l), signer)
}

// material makes is into a bundle's material and manifest, signed by
// signer unless it is nil.
func (w *world) material(is *devca.Issued, signer *bundle.Signer) (*bundle.Material, *bundle.Manifest) {
	w.t.Helper()
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		w.t.Fatal(err)
	}
	m := bundle.NewManifest(certName, mat, bundle.SourceImport, time.Now())
	if signer != nil {
		if err := signer.Sign(m); err != nil {
			w.t.Fatal(err)
		}
	}
	return mat, m
}

// hostResult is one host's line of `certpush push --json`.
type hostResult struct {
	Host     string `json:"host"`
	Wave     string `json:"wave"`
	Result   string `json:"result"`
	Error    string `json:"error"`
	BundleID string `json:"bundle_id"`
}

// push runs push --json and returns the exit code and each host's result.
func (w *world) push(args ...string) (int, map[string]hostResult) {
	w.t.Helper()
	code, stdout, _ := w.certpush(append([]string{"push", "--json"}, args...)...)
	var out struct {
		Certs []struct {
			Results []hostResult `json:"results"`
		} `json:"certs"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		w.t.Fatalf("push output is not JSON: %v", err)
	}
	res := map[string]hostResult{}
	for _, c := range out.Certs {
		for _, r := range c.Results {
			res[r.Host] = r
		}
	}
	return code, res
}

// converge pushes once: every host must end installed or unchanged,
// serving want, with nothing temporary left.
func (w *world) converge(want string) {
	w.t.Helper()
	code, res := w.push()
	if code != 0 {
		w.t.Errorf("converging push exited %d: %+v", code, res)
	}
	for _, h := range w.fleet.Hosts {
		if r := res[h.Name].Result; r != "installed" && r != "unchanged" {
			w.t.Errorf("%s: converging push: %s %s", h.Name, r, res[h.Name].Error)
		}
	}
	w.check(checkOptions{allowed: []string{want}, settled: true})
}

// checkOptions say what check accepts.
type checkOptions struct {
	allowed []string // fingerprints a host may serve; bootstrap ones are added
	// settled also requires no temporary upload or staging directory
	// anywhere in the nodes' directories.
	settled bool
	hosts   []*testfleet.Host // nil: every host
	// incoming overrides a host's incoming directory (chroot setups).
	incoming map[string]string
}

// check asserts the invariants on every host: it serves one of the
// allowed certificates (a TLS handshake proves the key matches), live
// points at a complete version whose certificate is the served one, every
// version in archive verifies, no private key is readable by others, and
// no key reached a log.
func (w *world) check(o checkOptions) {
	w.t.Helper()
	hosts := o.hosts
	if hosts == nil {
		hosts = w.fleet.Hosts
	}
	for _, h := range hosts {
		allowed := append([]string{h.BootstrapFingerprint}, o.allowed...)
		ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
		served, err := h.ServedFingerprint(ctx, "www.example.test")
		cancel()
		if err != nil {
			w.t.Errorf("%s: no TLS handshake: %v", h.Name, err)
			continue
		}
		if !slices.Contains(allowed, served) {
			w.t.Errorf("%s serves %.16s, none of the allowed %.16q", h.Name, served, allowed)
		}
		live := filepath.Join(h.Root, "live", certName)
		b, err := bundle.Open(live)
		if err != nil {
			w.t.Errorf("%s: live version: %v", h.Name, err)
			continue
		}
		if _, err := b.Verify(w.trusted(), b.Manifest.NotBefore.Add(time.Second)); err != nil {
			w.t.Errorf("%s: live version does not verify: %v", h.Name, err)
		}
		if b.Manifest.Fingerprint != served {
			w.t.Errorf("%s: live is %.16s but nginx serves %.16s", h.Name, b.Manifest.Fingerprint, served)
		}
		w.checkArchive(h, o.settled)
		if o.settled {
			inc := h.Incoming
			if o.incoming[h.Name] != "" {
				inc = o.incoming[h.Name]
			}
			w.noTemp(filepath.Join(inc, certName))
			w.noTemp(filepath.Join(h.Root, "live"))
			if _, err := os.Lstat(filepath.Join(h.Root, "live", "."+certName+".pending")); err == nil {
				w.t.Errorf("%s: install record left behind", h.Name)
			}
		}
	}
	w.checkSecrets()
}

// checkArchive asserts that every version directory verifies.
func (w *world) checkArchive(h *testfleet.Host, settled bool) {
	w.t.Helper()
	dir := filepath.Join(h.Root, "archive", certName)
	entries, err := os.ReadDir(dir)
	if err != nil {
		w.t.Errorf("%s: %v", h.Name, err)
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			if settled {
				w.t.Errorf("%s: temporary %s left in archive", h.Name, e.Name())
			}
			continue
		}
		b, err := bundle.Open(filepath.Join(dir, e.Name()))
		if err == nil {
			_, err = b.Verify(w.trusted(), b.Manifest.NotBefore.Add(time.Second))
		}
		if err != nil {
			w.t.Errorf("%s: partial or bad version %s in archive: %v", h.Name, e.Name(), err)
		}
	}
}

func (w *world) noTemp(dir string) {
	w.t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") || strings.HasSuffix(e.Name(), ".tmp") {
			w.t.Errorf("temporary %s left in %s", e.Name(), dir)
		}
	}
}

// checkSecrets walks the fleet, the state directory and secretDirs: no
// file holding a private key may be readable by others (by the group only
// when it is keyGroup), and no key issued in this test may appear in any
// output captured so far.
func (w *world) checkSecrets() {
	w.t.Helper()
	for _, root := range append([]string{w.fleet.Dir, w.stateDir}, w.secretDirs...) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil || fi.Size() > 1<<20 {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(data, []byte("PRIVATE KEY-----")) {
				return nil
			}
			perm := fi.Mode().Perm()
			gid := int(fi.Sys().(*syscall.Stat_t).Gid)
			switch {
			case perm&0o007 != 0:
				w.t.Errorf("private key %s is world-accessible (%04o)", p, perm)
			case perm&0o070 != 0 && (w.keyGroup < 0 || gid != w.keyGroup || perm&0o030 != 0):
				w.t.Errorf("private key %s is group-accessible (%04o, gid %d)", p, perm, gid)
			}
			return nil
		})
	}
	w.mu.Lock()
	logs := w.logs.Bytes()
	keys := slices.Clone(w.keys)
	w.mu.Unlock()
	for _, k := range keys {
		if line := keyLeak(logs, k); line != "" {
			w.t.Errorf("private key material in captured output: %.20s...", line)
		}
	}
}

// keyLeak returns a base64 line of key's PEM body found in logs, "" for
// none. Every line is checked, so that a partial leak is caught too.
func keyLeak(logs, key []byte) string {
	blk, _ := pem.Decode(key)
	if blk == nil {
		return ""
	}
	body := pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: blk.Bytes})
	for _, line := range strings.Split(string(body), "\n") {
		if len(line) < 40 || strings.HasPrefix(line, "-----") {
			continue
		}
		if bytes.Contains(logs, []byte(line)) {
			return line
		}
	}
	return ""
}

// poll calls cond until it reports true or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}
