package faults

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
)

// srvDir makes a root-owned directory under /srv (sshd refuses a chroot
// under /tmp, and root's files must not sit where the push account can
// replace them), removed in cleanup.
func srvDir(t *testing.T) string {
	t.Helper()
	if err := os.MkdirAll("/srv", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/srv", "certpush-faults-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rootNode makes h look like a node where root runs certnode: the root
// directory and everything in it belongs to root, keys readable by the
// service's group (nginx runs as the fleet user here), and a root-owned
// certnode and config in srv. It returns the config's path.
func (w *world) rootNode(h *testfleet.Host, srv, incoming string) string {
	w.t.Helper()
	err := filepath.WalkDir(h.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, w.fleet.GID); err != nil {
			return err
		}
		if d.Name() == bundle.KeyFile && d.Type().IsRegular() {
			return os.Chmod(p, 0o640)
		}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.keyGroup = w.fleet.GID
	w.secretDirs = append(w.secretDirs, srv)
	bin := filepath.Join(srv, "certnode")
	if out, err := exec.Command("cp", certnodeBin, bin).CombinedOutput(); err != nil {
		w.t.Fatalf("copy certnode: %v: %s", err, out)
	}
	return w.writeNodeConfig(h, filepath.Join(srv, "certnode.yaml"),
		nodeDefaults{Group: testfleet.FleetUser, KeyMode: "0640"},
		func(c *nodeConfig) { c.Incoming = incoming })
}

func (w *world) sshClient(h *testfleet.Host) *ssh.Client {
	w.t.Helper()
	cfg, err := w.fleet.ClientConfig()
	if err != nil {
		w.t.Fatal(err)
	}
	c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	return c
}

// run runs cmd over a new session with empty stdin and returns its exit
// status (-1 for other errors) and combined output.
func run(c *ssh.Client, cmd string) (int, string) {
	s, err := c.NewSession()
	if err != nil {
		return -1, err.Error()
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdin = strings.NewReader("")
	s.Stdout, s.Stderr = &stdout, &stderr
	err = s.Run(cmd)
	out := stdout.String() + stderr.String()
	if ee, ok := err.(*ssh.ExitError); ok {
		return ee.ExitStatus(), out
	}
	if err != nil {
		return -1, out + err.Error()
	}
	return 0, out
}

// upload writes a bundle's files into incoming/<name>/<id>/ over SFTP, as
// the push account can; files overrides contents by file name.
func upload(t *testing.T, sc *sftp.Client, incoming, id string, mat *bundle.Material, m *bundle.Manifest, files map[string][]byte) {
	t.Helper()
	contents := bundle.Contents(mat)
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	contents[bundle.ManifestFile] = raw
	for k, v := range files {
		contents[k] = v
	}
	dir := path.Join(incoming, certName, id)
	if err := sc.MkdirAll(dir); err != nil {
		t.Fatalf("mkdir %s: %v", dir, err)
	}
	for name, data := range contents {
		f, err := sc.OpenFile(path.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		if name == bundle.KeyFile {
			f.Chmod(0o600)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
}

// badBundles are bundles the push account might place in incoming and
// ask root's certnode to install; each must be refused.
func (w *world) badBundles(installedNotBefore time.Time) []struct {
	desc  string
	id    string
	mat   *bundle.Material
	m     *bundle.Manifest
	files map[string][]byte
	want  string
} {
	w.t.Helper()
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	untrusted := bundle.NewSigner(otherKey)
	type bad = struct {
		desc  string
		id    string
		mat   *bundle.Material
		m     *bundle.Manifest
		files map[string][]byte
		want  string
	}
	var out []bad
	add := func(desc string, mat *bundle.Material, m *bundle.Manifest, files map[string][]byte, want string) {
		out = append(out, bad{desc, m.ID, mat, m, files, want})
	}
	mat, m := w.issue(devca.Leaf{}, nil)
	add("unsigned", mat, m, nil, "not signed")
	mat, m = w.issue(devca.Leaf{}, untrusted)
	add("signed by an untrusted key", mat, m, nil, "untrusted key")
	mat, m = w.issue(devca.Leaf{}, w.signer)
	other, _ := w.issue(devca.Leaf{}, nil)
	add("tampered (another key in place of the signed one)", mat, m, map[string][]byte{bundle.KeyFile: other.KeyPEM}, "")
	// A signed manifest whose key does not match the certificate (what a
	// broken management server could produce).
	mat, _ = w.issue(devca.Leaf{}, nil)
	mixed := *mat
	mixed.KeyPEM = other.KeyPEM
	mm := bundle.NewManifest(certName, &mixed, bundle.SourceImport, time.Now())
	if err := w.signer.Sign(mm); err != nil {
		w.t.Fatal(err)
	}
	add("key does not match the certificate", &mixed, mm, nil, "")
	now := time.Now()
	mat, m = w.issue(devca.Leaf{NotBefore: now.Add(-100 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, w.signer)
	add("expired", mat, m, nil, "expired")
	mat, m = w.issue(devca.Leaf{NotBefore: installedNotBefore.Add(-48 * time.Hour)}, w.signer)
	add("older than the installed one (downgrade)", mat, m, nil, "older")
	mat, m = w.issue(devca.Leaf{Domains: []string{"other.test"}}, w.signer)
	add("for other names", mat, m, nil, "")
	mat, _ = w.issue(devca.Leaf{}, nil)
	wrongName := bundle.NewManifest("other.test", mat, bundle.SourceImport, now)
	if err := w.signer.Sign(wrongName); err != nil {
		w.t.Fatal(err)
	}
	add("for another certificate name", mat, wrongName, nil, "")
	// Signed by the trusted key, but no root the node trusts vouches for
	// the certificate: a self-signed one, and one from another CA.
	self, err := devca.SelfSigned(devca.Leaf{Domains: domains})
	if err != nil {
		w.t.Fatal(err)
	}
	mat, m = w.material(self, w.signer)
	add("self-signed", mat, m, nil, "it is self-signed")
	foreign, err := devca.New("foreign")
	if err != nil {
		w.t.Fatal(err)
	}
	is, err := foreign.Issue(devca.Leaf{Domains: domains})
	if err != nil {
		w.t.Fatal(err)
	}
	mat, m = w.material(is, w.signer)
	add("from a CA the node does not trust", mat, m, nil, "does not chain to a trusted root")
	return out
}

type nodeResults struct {
	Results []struct {
		Cert, Result, ID, Error string
	} `json:"results"`
}

// TestForcedCommand sets node-1 up for install: now with the least
// privilege certpush needs: authorized_keys restricts the push key to
// hooks/certnode-forced-command, which allows SFTP and `certnode install`
// through sudo (hooks/sudoers.certnode) and refuses everything else; root
// owns the certificates. The push works; nothing else does.
func TestForcedCommand(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	bin, config := w.forcedNode(h)

	// What certpush does works.
	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "installed" {
		t.Fatalf("push through the forced command: %d %+v", code, res)
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})
	fi, err := os.Stat(filepath.Join(h.Root, "live", certName, bundle.KeyFile))
	if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("installed key is not root's: %v", err)
	}

	c := w.sshClient(h)
	id := strings.Repeat("0", 16)
	for _, cmd := range []string{
		"id",
		"/bin/sh -c id",
		"certnode status",
		"certnode install --force --json --id " + id + " " + certName,
		"certnode --config /tmp/evil.yaml install --json --id " + id + " " + certName,
		"certnode install --json --id " + id + " " + certName + "; id",
		"certnode install --json --id " + id + " ../../etc",
		"sudo -n /bin/sh -c id",
		"",
	} {
		code, out := run(c, cmd)
		if code == 0 || !strings.Contains(out, "refused") || strings.Contains(out, "uid=") {
			t.Errorf("%q: exit %d, output %q; want refused", cmd, code, out)
		}
	}
	if conn, err := c.Dial("tcp", h.TLSAddr()); err == nil {
		conn.Close()
		t.Errorf("port forwarding allowed")
	}

	// sudo, asked directly by the account, allows only the exact line.
	for _, args := range [][]string{
		{bin, "--config", config, "install", "--json", "--force", "--id", id, certName},
		{bin, "--config", config, "status"},
		{bin, "--config", "/tmp/evil.yaml", "install", "--json", "--id", id, certName},
		{"/bin/sh", "-c", "id"},
	} {
		cmd := exec.Command("sudo", append([]string{"-n"}, args...)...)
		cmd.SysProcAttr = fleetCred(w)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "sudo") {
			t.Errorf("sudo %v: %v %q; want refused by sudo", args, err, out)
		}
	}

	// Bad bundles, uploaded as the account can and installed as root.
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	installed, err := bundle.Open(filepath.Join(h.Root, "live", certName))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range w.badBundles(installed.Manifest.NotBefore) {
		t.Run(b.desc, func(t *testing.T) {
			upload(t, sc, h.Incoming, b.id, b.mat, b.m, b.files)
			code, out := run(c, "certnode install --json --id "+b.id+" "+certName)
			w.record([]byte(out))
			var nr nodeResults
			if i := strings.Index(out, "{"); i >= 0 {
				json.NewDecoder(strings.NewReader(out[i:])).Decode(&nr)
			}
			if code != 1 || len(nr.Results) != 1 || nr.Results[0].Result != "refused" || !strings.Contains(nr.Results[0].Error, b.want) {
				t.Errorf("exit %d, %s; want refused (%q)", code, out, b.want)
			}
			w.check(checkOptions{allowed: []string{fp}})
			if live, _ := bundle.Open(filepath.Join(h.Root, "live", certName)); live == nil || live.Manifest.ID != installed.Manifest.ID {
				t.Errorf("live changed")
			}
		})
	}
	w.t = t
	w.converge(fp)
}

// TestChrootSFTPOnly sets node-1 up for install: cron with an sshd Match
// block (hooks/sshd_config.certpush): the push account gets internal-sftp
// in a root-owned chroot whose only writable directory is incoming. A push
// uploads, root's certnode (the timer) installs; the account cannot run a
// command, reach a file outside the chroot, write outside incoming, or
// make root's certnode follow a symlink out of incoming.
func TestChrootSFTPOnly(t *testing.T) {
	requireRoot(t)
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	srv := srvDir(t)
	chroot := filepath.Join(srv, "chroot")
	incoming := filepath.Join(chroot, "incoming")
	for _, d := range []string{chroot, incoming} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(incoming, w.fleet.UID, w.fleet.GID); err != nil {
		t.Fatal(err)
	}
	config := w.rootNode(h, srv, incoming)

	// The install: cron block, shipped commented out.
	match := mustRead(t, "../../hooks/sshd_config.certpush")
	match = match[strings.Index(match, "#Match User"):]
	if i := strings.Index(match, "\n\n"); i >= 0 {
		match = match[:i+1]
	}
	var lines []string
	for _, l := range strings.SplitAfter(match, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "#"))
	}
	match = strings.Join(lines, "")
	// The push key stays in the fleet's root-owned file.
	match = strings.ReplaceAll(match, "AuthorizedKeysFile /etc/ssh/authorized_keys/%u", "AuthorizedKeysFile "+filepath.Join(h.Dir, "ssh", "authorized_keys"))
	match = strings.ReplaceAll(match, "/certsync", chroot)
	match = strings.ReplaceAll(match, "User certsync", "User "+testfleet.FleetUser)
	restartSSH(t, h, mustRead(t, h.SSHConfig)+"\n"+match)
	w.writeInventory(testfleet.InventoryOptions{Install: "cron"}, func(inv map[string]any) { invHost(inv, h.Name)["incoming"] = "/incoming" })

	fp := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[h.Name].Result != "uploaded" {
		t.Fatalf("push into the chroot: %d %+v\n%s", code, res, tailString(mustRead(t, h.SSHLog), 600)+"\n"+mustRead(t, h.SSHConfig))
	}
	if code, _, _ := w.certnode(true, "--config", config, "install"); code != 0 {
		t.Fatalf("root's certnode install exited %d", code)
	}
	settled := checkOptions{allowed: []string{fp}, settled: true, incoming: map[string]string{h.Name: incoming}}
	w.check(settled)
	// The installed manifest is published where the account reads it.
	if code, res := w.push(); code != 0 || res[h.Name].Result != "unchanged" {
		t.Errorf("second push: %d %+v, want unchanged", code, res)
	}

	c := w.sshClient(h)
	marker := filepath.Join(os.TempDir(), "certpush-faults-ran-"+filepath.Base(srv))
	for _, cmd := range []string{"id", "touch " + marker, "/bin/sh -c 'touch " + marker + "'"} {
		_, out := run(c, cmd)
		if strings.Contains(out, "uid=") {
			t.Errorf("%q ran: %q", cmd, out)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("a command ran outside SFTP")
	}
	if conn, err := c.Dial("tcp", h.TLSAddr()); err == nil {
		conn.Close()
		t.Errorf("port forwarding allowed")
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if entries, err := sc.ReadDir("/"); err != nil || len(entries) != 1 || entries[0].Name() != "incoming" {
		t.Errorf("the chroot shows %v (%v), want only incoming", names(entries), err)
	}
	for _, p := range []string{"/etc/passwd", "/etc/shadow", config, filepath.Join(h.Root, "live", certName, bundle.KeyFile)} {
		if f, err := sc.Open(p); err == nil {
			f.Close()
			t.Errorf("%s is readable over SFTP", p)
		}
	}
	for _, p := range []string{"/evil", "/incoming/../evil"} {
		if f, err := sc.Create(p); err == nil {
			f.Close()
			t.Errorf("%s is writable over SFTP", p)
		}
		if err := sc.Mkdir(p + ".d"); err == nil {
			t.Errorf("%s.d could be created over SFTP", p)
		}
	}
	if err := sc.Rename("/incoming", "/moved"); err == nil {
		t.Errorf("incoming could be renamed")
	}

	// A bundle whose key is a symlink out of incoming: root's certnode
	// must not follow it.
	mat, m := w.issue(devca.Leaf{}, w.signer)
	upload(t, sc, "/incoming", m.ID, mat, m, nil)
	keyPath := path.Join("/incoming", certName, m.ID, bundle.KeyFile)
	if err := sc.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	if err := sc.Symlink("/etc/shadow", keyPath); err != nil {
		t.Fatal(err)
	}
	code, out, _ := w.certnode(true, "--config", config, "install", "--json")
	if code != 1 || !strings.Contains(out, "refused") || !strings.Contains(out, "symlink") {
		t.Errorf("certnode with a symlinked key: exit %d %s; want refused (symlink)", code, out)
	}
	w.check(settled)

	// The same host pushed as install: now: the upload works, the install
	// command cannot run (internal-sftp), and the error says why.
	w.writeInventory(testfleet.InventoryOptions{Install: "now"}, func(inv map[string]any) { invHost(inv, h.Name)["incoming"] = "/incoming" })
	w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 1 || !strings.Contains(res[h.Name].Error, `it printed "This service allows sftp connections only."`) || !strings.Contains(res[h.Name].Error, "set install: cron for this host") {
		t.Errorf("install: now into the chroot: %d %+v; want failed, saying the host runs no commands", code, res[h.Name])
	}
}

func names(fis []fs.FileInfo) []string {
	var out []string
	for _, fi := range fis {
		out = append(out, fi.Name())
	}
	return out
}

func fleetCred(w *world) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.fleet.UID), Gid: uint32(w.fleet.GID)}}
}
