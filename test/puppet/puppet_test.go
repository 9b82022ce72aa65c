// Package puppet tests contrib/puppet/certnode with the real puppet apply
// on a real node (OpenSSH sshd and nginx on loopback; Puppet applies
// locally, as root, with every path under the node's prefix).
package puppet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/test/nodetest"
)

// TestPuppetModule applies class certnode (the node) and
// certnode::certpush_host (the management server) with puppet apply
// --detailed-exitcodes: a wrong fingerprint fails and trusts nothing; the
// first run changes things (exit 2) and the node then installs and serves
// a pushed certificate through the push account; a second run changes
// nothing (exit 0); --noop on a node whose config was edited reports the
// change and makes none.
func TestPuppetModule(t *testing.T) {
	testfleet.Require(t, "puppet")
	start := time.Now()
	w := nodetest.Start(t)
	t.Logf("node started in %s", time.Since(start).Round(time.Millisecond))
	p := newPuppet(t)
	modules, err := filepath.Abs("../../contrib/puppet")
	if err != nil {
		t.Fatal(err)
	}
	p.modulepath = modules

	// A fingerprint that is not the node's: the run fails (exit 4 or 6),
	// nothing is trusted or listed.
	code, out := p.apply(manifest(w, "SHA256:"+strings.Repeat("A", 43), false))
	if code != 4 && code != 6 || !strings.Contains(out, "refusing to trust it") {
		t.Fatalf("wrong fingerprint: exit %d, want 4 or 6 with certpush's refusal:\n%s", code, out)
	}
	w.Known(false)

	site := manifest(w, w.HostKeyFingerprint(), true)
	if code, out := p.apply(site); code != 2 {
		t.Fatalf("first run: exit %d, want 2 (changes):\n%s", code, out)
	}
	w.CheckNode()
	w.Known(true)
	took := w.PushAndCheck()
	t.Logf("push through the push account: %s", took.Round(time.Millisecond))

	if code, out := p.apply(site); code != 0 {
		t.Fatalf("second run: exit %d, want 0 (no changes):\n%s", code, out)
	}

	edited, err := os.ReadFile(w.CertnodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	edited = append(edited, "keep: 9\n"...)
	if err := os.WriteFile(w.CertnodeConfig, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = p.apply(site, "--noop")
	if code != 0 || !strings.Contains(out, "-keep: 9") || !strings.Contains(out, "(noop)") {
		t.Errorf("--noop on an edited node: exit %d, want 0 with the diff and a noop change:\n%s", code, out)
	}
	if now, _ := os.ReadFile(w.CertnodeConfig); string(now) != string(edited) {
		t.Error("--noop changed certnode.yaml")
	}
	if code, out := p.apply(site); code != 2 {
		t.Errorf("run on the edited node: exit %d, want 2:\n%s", code, out)
	} else if now, _ := os.ReadFile(w.CertnodeConfig); strings.Contains(string(now), "keep: 9") {
		t.Error("the run did not put certnode.yaml back")
	}
	t.Logf("total %s (%d puppet runs: %s)", time.Since(start).Round(time.Millisecond), len(p.took), p.summary())
}

// TestPuppetModuleCron applies class certnode for install: cron: the
// account gets chrooted SFTP only (no sudo rule), certpush only uploads,
// and the node's cron job installs; a second run changes nothing.
func TestPuppetModuleCron(t *testing.T) {
	testfleet.Require(t, "puppet")
	start := time.Now()
	w := nodetest.StartMode(t, "cron")
	p := newPuppet(t)
	modules, err := filepath.Abs("../../contrib/puppet")
	if err != nil {
		t.Fatal(err)
	}
	p.modulepath = modules
	site := manifest(w, w.HostKeyFingerprint(), true)
	if code, out := p.apply(site); code != 2 {
		t.Fatalf("first run: exit %d, want 2 (changes):\n%s", code, out)
	}
	w.CheckNode()
	w.Known(true)
	took := w.PushAndCheck()
	t.Logf("upload and the cron job's install: %s", took.Round(time.Millisecond))
	if code, out := p.apply(site); code != 0 {
		t.Fatalf("second run: exit %d, want 0 (no changes):\n%s", code, out)
	}
	t.Logf("total %s (%d puppet runs: %s)", time.Since(start).Round(time.Millisecond), len(p.took), p.summary())
}

// TestPuppetModulePackage applies class certnode with install_method
// package from a certnode .deb built with make deb, for install: cron with
// the package's systemd timer: the first run exits 2, the package is
// installed and unchanged but for its conffile, the node is set up as
// SECURITY.md says, the packaged timer is enabled (systemd-analyze verify
// accepts its units) and its service installs what certpush uploaded; a
// second run exits 0.
func TestPuppetModulePackage(t *testing.T) {
	testfleet.Require(t, "puppet")
	start := time.Now()
	w := nodetest.StartWith(t, nodetest.Options{Mode: "cron", Package: true})
	t.Logf("node started in %s", time.Since(start).Round(time.Millisecond))
	p := newPuppet(t)
	modules, err := filepath.Abs("../../contrib/puppet")
	if err != nil {
		t.Fatal(err)
	}
	p.modulepath = modules
	site := manifest(w, w.HostKeyFingerprint(), true)
	if code, out := p.apply(site); code != 2 {
		t.Fatalf("first run: exit %d, want 2 (changes):\n%s", code, out)
	}
	w.CheckNode()
	w.Known(true)
	took := w.PushAndCheck()
	t.Logf("upload and the timer's install: %s", took.Round(time.Millisecond))
	if code, out := p.apply(site); code != 0 {
		t.Fatalf("second run: exit %d, want 0 (no changes):\n%s", code, out)
	}
	t.Logf("total %s (%d puppet runs: %s)", time.Since(start).Round(time.Millisecond), len(p.took), p.summary())
}

// manifest is the site manifest: the node's class (unless !withNode) and
// its management side, with fingerprint as the node's host key
// fingerprint.
func manifest(w *nodetest.World, fingerprint string, withNode bool) string {
	h := w.Host
	node := map[string]any{
		"mode":                w.Mode,
		"authorized_keys_dir": w.AuthorizedKeysDir,
		"push_keys":           []string{w.PushKey},
		"root":                h.Root,
		"trusted_keys":        []string{w.SigningKey},
		"roots":               w.Fleet.Roots,
		"defaults":            w.CertnodeDefaults(),
		"certs":               w.Certs(),
		"sudoers_file":        w.SudoersFile,
		"sshd_config":         h.SSHConfig,
		"sshd_block_file":     filepath.Join(w.Prefix, "sshd_match"),
		// sshd -D re-executes itself on SIGHUP, keeping its pid.
		"sshd_reload":   []string{"/bin/kill", "-HUP", strconv.Itoa(h.SSHPID())},
		"timer":         true,
		"scheduler":     w.Scheduler,
		"cron_file":     w.CronFile,
		"nginx_snippet": w.NginxSnippet,
	}
	if w.Package {
		// The module's defaults for what the package decides (certnode,
		// the forced command, the account, its home and incoming, the
		// config); the package's timer enabled, not started.
		node["install_method"] = "package"
		node["deb"] = w.Deb
		node["systemd_start"] = false
	} else {
		for k, v := range map[string]any{
			"install_method": "binary",
			"binary_src":     w.Bins.Certnode,
			"bin":            w.Bin,
			"forced_command": w.ForcedCommand,
			"user":           w.User,
			"home":           w.Home,
			"incoming":       w.Incoming,
			"config_file":    w.CertnodeConfig,
		} {
			node[k] = v
		}
	}
	mgmt := map[string]any{
		"fingerprint": fingerprint,
		"hosts_file":  w.HostsFile,
		"config":      w.Config,
		"known_hosts": w.MgmtKnownHosts,
		"certpush":    w.Bins.Certpush,
	}
	site := "certnode::certpush_host { " + value(w.NodeAddress()) + ":\n" + params(mgmt) + "}\n"
	if withNode {
		site = "class { 'certnode':\n" + params(node) + "}\n" + site
	}
	return site
}

func params(m map[string]any) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s => %s,\n", k, value(m[k]))
	}
	return b.String()
}

// value writes v as a Puppet literal.
func value(v any) string {
	switch v := v.(type) {
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case []string:
		var s []string
		for _, x := range v {
			s = append(s, value(x))
		}
		return "[" + strings.Join(s, ", ") + "]"
	case map[string]any:
		var keys []string
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var s []string
		for _, k := range keys {
			s = append(s, value(k)+" => "+value(v[k]))
		}
		return "{" + strings.Join(s, ", ") + "}"
	}
	panic(fmt.Sprintf("no Puppet literal for %T", v))
}

type puppet struct {
	t          *testing.T
	dir        string
	modulepath string
	took       []time.Duration
}

func newPuppet(t *testing.T) *puppet {
	return &puppet{t: t, dir: t.TempDir()}
}

// apply runs puppet apply --detailed-exitcodes on site with its own
// directories (none of the system's) and returns the exit code and the
// output, without Facter's harmless permission warnings.
func (p *puppet) apply(site string, args ...string) (int, string) {
	p.t.Helper()
	manifest := filepath.Join(p.dir, "site.pp")
	if err := os.WriteFile(manifest, []byte(site), 0o644); err != nil {
		p.t.Fatal(err)
	}
	argv := []string{"apply", "--detailed-exitcodes", "--color=false", "--show_diff",
		"--modulepath", p.modulepath}
	for _, d := range []string{"confdir", "vardir", "codedir", "logdir", "rundir", "publicdir", "ssldir"} {
		argv = append(argv, "--"+d, filepath.Join(p.dir, d))
	}
	argv = append(append(argv, args...), manifest)
	cmd := exec.Command("puppet", argv...)
	cmd.Env = append(os.Environ(), "LANG=C.UTF-8")
	start := time.Now()
	raw, err := cmd.CombinedOutput()
	took := time.Since(start)
	p.took = append(p.took, took)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("puppet apply: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.Contains(l, "Facter: ") {
			out = append(out, l)
		}
	}
	p.t.Logf("puppet apply %s: exit %d in %s", strings.Join(args, " "), code, took.Round(time.Millisecond))
	return code, strings.Join(out, "\n")
}

func (p *puppet) summary() string {
	var s []string
	for _, d := range p.took {
		s = append(s, d.Round(100*time.Millisecond).String())
	}
	return strings.Join(s, ", ")
}
