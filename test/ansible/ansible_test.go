// Package ansible tests contrib/ansible's roles with the real
// ansible-playbook against a real node (OpenSSH sshd and nginx on
// loopback, reached as root over SSH) and the local management server.
package ansible

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/test/nodetest"
)

// TestAnsibleRoles runs contrib/ansible's certnode role on a node and its
// certpush_node role on the management server. A wrong fingerprint fails
// the play and trusts nothing; the first run changes things and the node
// then installs and serves a pushed certificate through the push account;
// a second run changes nothing; --check --diff changes nothing, and on a
// node whose config was edited shows the change without making it.
//
// A second node in the same runs installs certnode the way most users
// will, from its .deb (built with make deb; install_method package), in
// install: cron with the package's certnode-install.timer: the package
// is installed and unchanged but for its conffile, the role enables the
// packaged timer (systemd-analyze verify accepts its units), and the
// timer's service installs what certpush uploaded.
func TestAnsibleRoles(t *testing.T) {
	testfleet.Require(t, "ansible-playbook")
	start := time.Now()
	w := nodetest.Start(t)
	// One more node in the same runs: certnode from its .deb, install:
	// cron with the package's systemd timer.
	wp := nodetest.StartWith(t, nodetest.Options{Mode: "cron", Package: true})
	t.Logf("nodes started in %s", time.Since(start).Round(time.Millisecond))
	a := newPlaybook(t, w, wp)

	// A fingerprint that is not the node's: the play fails, nothing is
	// trusted or listed.
	out, err := a.run("--limit", "mgmt", "-e", "certpush_node_fingerprint=SHA256:"+strings.Repeat("A", 43))
	if err == nil || !strings.Contains(out, "refusing to trust it") {
		t.Fatalf("wrong fingerprint: %v, want the play to fail with certpush's refusal:\n%s", err, out)
	}
	w.Known(false)

	out, err = a.run()
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	recap := parseRecap(t, out)
	if recap["node"].changed == 0 || recap["pkgnode"].changed == 0 || recap["mgmt"].changed == 0 {
		t.Errorf("first run changed nothing: %+v\n%s", recap, out)
	}
	w.CheckNode()
	w.Known(true)
	took := w.PushAndCheck()
	t.Logf("push through the push account: %s", took.Round(time.Millisecond))
	wp.CheckNode()
	wp.Known(true)
	took = wp.PushAndCheck()
	t.Logf("package node: upload and the timer's install: %s", took.Round(time.Millisecond))

	out, err = a.run()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	for h, r := range parseRecap(t, out) {
		if r.changed != 0 {
			t.Errorf("second run: %s changed=%d, want 0\n%s", h, r.changed, out)
		}
	}

	out, err = a.run("--check", "--diff")
	if err != nil {
		t.Fatalf("--check --diff: %v\n%s", err, out)
	}
	recap = parseRecap(t, out)
	if len(recap) != 3 {
		t.Errorf("--check --diff: want node, pkgnode and mgmt in the recap: %+v", recap)
	}
	for h, r := range recap {
		if r.changed != 0 {
			t.Errorf("--check --diff on a set-up node: %s changed=%d, want 0\n%s", h, r.changed, out)
		}
	}
	// An admin edits certnode.yaml by hand: --check --diff shows what the
	// role would put back, and changes nothing.
	edited, err := os.ReadFile(w.CertnodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	edited = append(edited, "keep: 9\n"...)
	if err := os.WriteFile(w.CertnodeConfig, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = a.run("--check", "--diff", "--limit", "node")
	if err != nil {
		t.Fatalf("--check --diff on an edited node: %v\n%s", err, out)
	}
	if r := parseRecap(t, out)["node"]; r.changed != 1 || !strings.Contains(out, "-keep: 9") {
		t.Errorf("--check --diff on an edited node: changed=%d, want 1 with the line in the diff:\n%s", r.changed, out)
	}
	if now, _ := os.ReadFile(w.CertnodeConfig); string(now) != string(edited) {
		t.Error("--check changed certnode.yaml")
	}
	t.Logf("total %s (%d playbook runs: %s)", time.Since(start).Round(time.Millisecond), len(a.took), a.summary())
}

// TestAnsibleRolesCron runs the roles for install: cron: the account gets
// chrooted SFTP only (no sudo rule), certpush only uploads, and the
// node's cron job installs; a second run changes nothing.
func TestAnsibleRolesCron(t *testing.T) {
	testfleet.Require(t, "ansible-playbook")
	start := time.Now()
	w := nodetest.StartMode(t, "cron")
	a := newPlaybook(t, w)
	out, err := a.run()
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	if r := parseRecap(t, out); r["node"].changed == 0 || r["mgmt"].changed == 0 {
		t.Errorf("first run changed nothing: %+v\n%s", r, out)
	}
	w.CheckNode()
	w.Known(true)
	took := w.PushAndCheck()
	t.Logf("upload and the cron job's install: %s", took.Round(time.Millisecond))
	out, err = a.run()
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	for h, r := range parseRecap(t, out) {
		if r.changed != 0 {
			t.Errorf("second run: %s changed=%d, want 0\n%s", h, r.changed, out)
		}
	}
	t.Logf("total %s (%d playbook runs: %s)", time.Since(start).Round(time.Millisecond), len(a.took), a.summary())
}

type playbook struct {
	t    *testing.T
	dir  string
	env  []string
	took []time.Duration
}

// newPlaybook writes ansible.cfg (everything Ansible writes stays in the
// test's directory), the inventory (each node over SSH as root with its
// known host key and the certnode role's variables as its host variables,
// the management server local), the certpush_node role's variables for
// each node and the playbook. A package node (certnode from the .deb) is
// "pkgnode", the other "node".
func newPlaybook(t *testing.T, worlds ...*nodetest.World) *playbook {
	t.Helper()
	dir := t.TempDir()
	roles, err := filepath.Abs("../../contrib/ansible/roles")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"home", "local", "remote", "cp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "[defaults]\nroles_path = " + roles + "\ninterpreter_python = /usr/bin/python3\n" +
		"local_tmp = " + filepath.Join(dir, "local") + "\nremote_tmp = " + filepath.Join(dir, "remote") + "\n" +
		"host_key_checking = True\nretry_files_enabled = False\nnocows = 1\ngathering = explicit\n" +
		"[ssh_connection]\npipelining = True\ncontrol_path_dir = " + filepath.Join(dir, "cp") + "\n"
	hosts := map[string]any{"mgmt": map[string]any{"ansible_connection": "local"}}
	var nodes []string
	play := ""
	for _, w := range worlds {
		name := nodeName(w)
		nodes = append(nodes, name)
		vars := nodeVars(w)
		vars["ansible_host"] = "127.0.0.1"
		vars["ansible_port"] = w.Host.SSHPort
		vars["ansible_user"] = w.AdminUser
		vars["ansible_ssh_private_key_file"] = w.AdminKey
		vars["ansible_ssh_common_args"] = "-o UserKnownHostsFile=" + w.KnownHosts + " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
		hosts[name] = vars
		writeJSON(t, filepath.Join(dir, "mgmt_"+name+".json"), map[string]any{
			"certpush_node_address":     w.NodeAddress(),
			"certpush_node_fingerprint": w.HostKeyFingerprint(),
			"certpush_hosts_file":       w.HostsFile,
			"certpush_config":           w.Config,
			"certpush_bin":              w.Bins.Certpush,
		})
		play += "- hosts: mgmt\n  vars_files: [mgmt_" + name + ".json]\n  roles: [certpush_node]\n"
	}
	play = "- hosts: " + strings.Join(nodes, ":") + "\n  become: false\n  roles: [certnode]\n" + play
	writeJSON(t, filepath.Join(dir, "inventory.json"), map[string]any{"all": map[string]any{"hosts": hosts}})
	for name, data := range map[string]string{"ansible.cfg": cfg, "site.yml": play} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"ANSIBLE_CONFIG=" + filepath.Join(dir, "ansible.cfg"),
		"ANSIBLE_FORCE_COLOR=0",
		"ANSIBLE_NOCOLOR=1",
		"LANG=C.UTF-8",
	}
	return &playbook{t: t, dir: dir, env: env}
}

func nodeName(w *nodetest.World) string {
	if w.Package {
		return "pkgnode"
	}
	return "node"
}

// nodeVars are the certnode role's variables for w's node. A package node
// gets the role's defaults for everything the package decides (certnode,
// the forced command, the account, its home and incoming, the config) and
// the package's systemd timer, enabled but not started (systemd may not
// run here).
func nodeVars(w *nodetest.World) map[string]any {
	h := w.Host
	vars := map[string]any{
		"certnode_mode":                w.Mode,
		"certnode_authorized_keys_dir": w.AuthorizedKeysDir,
		"certnode_push_keys":           []string{w.PushKey},
		"certnode_root":                h.Root,
		"certnode_trusted_keys":        []string{w.SigningKey},
		"certnode_roots":               w.Fleet.Roots,
		"certnode_defaults":            w.CertnodeDefaults(),
		"certnode_certs":               w.Certs(),
		"certnode_sudoers_file":        w.SudoersFile,
		"certnode_sshd_config":         h.SSHConfig,
		// sshd -D re-executes itself on SIGHUP, keeping its pid.
		"certnode_sshd_reload":   []string{"/bin/kill", "-HUP", strconv.Itoa(h.SSHPID())},
		"certnode_timer":         true,
		"certnode_scheduler":     w.Scheduler,
		"certnode_cron_file":     w.CronFile,
		"certnode_nginx_snippet": w.NginxSnippet,
	}
	if w.Package {
		vars["certnode_install_method"] = "package"
		vars["certnode_deb"] = w.Deb
		vars["certnode_systemd_start"] = false
		return vars
	}
	for k, v := range map[string]any{
		"certnode_install_method": "binary",
		"certnode_binary_src":     w.Bins.Certnode,
		"certnode_bin":            w.Bin,
		"certnode_forced_command": w.ForcedCommand,
		"certnode_user":           w.User,
		"certnode_home":           w.Home,
		"certnode_incoming":       w.Incoming,
		"certnode_config_file":    w.CertnodeConfig,
	} {
		vars[k] = v
	}
	return vars
}

// run runs ansible-playbook on the playbook with args and returns its
// output.
func (p *playbook) run(args ...string) (string, error) {
	p.t.Helper()
	cmd := exec.Command("ansible-playbook", append([]string{"-i", "inventory.json", "site.yml"}, args...)...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	p.took = append(p.took, took)
	p.t.Logf("ansible-playbook %s: %s", strings.Join(args, " "), took.Round(time.Millisecond))
	return string(out), err
}

func (p *playbook) summary() string {
	var s []string
	for _, d := range p.took {
		s = append(s, d.Round(100*time.Millisecond).String())
	}
	return strings.Join(s, ", ")
}

type recapLine struct{ ok, changed, unreachable, failed int }

var recapRE = regexp.MustCompile(`(?m)^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// parseRecap reads PLAY RECAP; every host must be there, none failed.
func parseRecap(t *testing.T, out string) map[string]recapLine {
	t.Helper()
	m := map[string]recapLine{}
	for _, g := range recapRE.FindAllStringSubmatch(out, -1) {
		n := func(i int) int { v, _ := strconv.Atoi(g[i]); return v }
		m[g[1]] = recapLine{ok: n(2), changed: n(3), unreachable: n(4), failed: n(5)}
	}
	if len(m) == 0 {
		t.Fatalf("no PLAY RECAP in:\n%s", out)
	}
	for h, r := range m {
		if r.failed != 0 || r.unreachable != 0 {
			t.Errorf("%s: failed=%d unreachable=%d\n%s", h, r.failed, r.unreachable, out)
		}
	}
	return m
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
