// Package nodetest sets up what the Ansible and Puppet tests configure and
// then check: a real node (a testfleet host: OpenSSH sshd and nginx on
// loopback) that an admin reaches as root over SSH, an empty prefix under
// /srv for the node's files, a push account name of its own, and a
// certpush management directory. The node setup itself is left to the
// tool under test; PushAndCheck then proves that the node works.
//
// It changes the machine (an account, a sudoers file, a cron file, files
// under /srv), so it runs only as root; everything is removed at the end.
package nodetest

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
)

// CertName and Domains are the node's certificate.
const CertName = "example.test"

var Domains = []string{"example.test", "www.example.test"}

// World is one node and its management directory.
type World struct {
	t     *testing.T
	Bins  *testfleet.Binaries
	Fleet *testfleet.Fleet
	Host  *testfleet.Host

	// The node: what the tool under test sets up, all under Prefix except
	// the account, SudoersFile and CronFile.
	Mode string // install: now or cron
	// Package: certnode comes from the certnode .deb (Deb, built by make
	// deb), with the package's paths and its certsync account; the
	// install timer is the package's systemd unit (Scheduler "systemd")
	// instead of a cron file.
	Package   bool
	Deb       string
	Scheduler string // cron or systemd
	suffix    string // of the names made on the machine
	Prefix    string // root-owned, 0755, under /srv
	// Where the node's files go, all under Prefix.
	Bin, ForcedCommand, Home, Incoming, AuthorizedKeysDir, CertnodeConfig, NginxSnippet string
	User                                                                                string // the push account to create
	SudoersFile                                                                         string // in /etc/sudoers.d
	CronFile                                                                            string // name in /etc/cron.d
	PushKey                                                                             string // certpush's public key (authorized_keys form)
	SigningKey                                                                          string // certpush's signing.pub (base64)

	// Admin access to the node as root (AdminUser, uid 0): a key of its
	// own and the fleet's known_hosts.
	AdminUser  string
	AdminKey   string
	KnownHosts string

	// The management server: certpush's config and what the management
	// role or class manages.
	Dir            string // management directory
	Config         string // certpush.yaml
	HostsFile      string // the certificate's hosts_file
	MgmtKnownHosts string // certpush's ssh.known_hosts, empty at first
}

// Start starts the node for install: now and writes the management
// directory.
func Start(t *testing.T) *World { t.Helper(); return StartMode(t, "now") }

// StartMode is Start for install: mode ("now" or "cron").
func StartMode(t *testing.T, mode string) *World {
	t.Helper()
	return StartWith(t, Options{Mode: mode})
}

// Options are a node's: install: Mode, and certnode from the package.
type Options struct {
	Mode    string // "now" or "cron"
	Package bool
}

// StartWith starts a node with o. A Package node holds DpkgLock for the
// whole test (see LockDpkg), refuses to start on a machine with certnode
// or certsync already, builds the packages with make deb, and purges
// certnode at the end.
func StartWith(t *testing.T, o Options) *World {
	t.Helper()
	mode := o.Mode
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run this test: not root")
		}
		t.Skip("sets up a node with an account and sudo rule: needs root")
	}
	testfleet.Require(t, testfleet.SSHD, testfleet.Nginx, "useradd", "userdel", "visudo", "sudo", "ssh", "ssh-keygen")
	w := &World{t: t, Mode: mode, Package: o.Package, Scheduler: "cron"}
	start := time.Now()
	var err error
	if w.Package {
		testfleet.Require(t, "dpkg", "systemctl", "systemd-analyze", "make")
		LockDpkg(t)
		NoPackages(t)
		w.Scheduler = "systemd"
		_, w.Deb = MakeDeb(t, t.TempDir(), "")
		t.Logf("built the packages in %s", time.Since(start).Round(time.Millisecond))
		t.Cleanup(w.purge)
	}
	if w.Bins, err = testfleet.BuildBinaries(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Bins.Remove() })
	t.Logf("built certpush and certnode in %s", time.Since(start).Round(time.Millisecond))

	w.Dir = t.TempDir()
	w.Config = filepath.Join(w.Dir, "certpush.yaml")
	w.HostsFile = filepath.Join(w.Dir, CertName+".hosts")
	w.MgmtKnownHosts = filepath.Join(w.Dir, "known_hosts")
	state := filepath.Join(w.Dir, "state")
	signer, err := bundle.LoadOrCreateSigner(state)
	if err != nil {
		t.Fatal(err)
	}
	w.SigningKey = signer.PublicKey()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	w.Fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts: 1, CertName: CertName, Domains: Domains, Signer: signer, TrustedKey: w.SigningKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Fleet.Close() })
	w.Host = w.Fleet.Hosts[0]
	w.PushKey = strings.TrimSpace(read(t, w.Fleet.Identity+".pub"))

	suffix := strconv.Itoa(os.Getpid() % 100000)
	if w.Package {
		// Another node of the same test process needs other names.
		suffix += "p"
	}
	w.suffix = suffix
	w.User = "cpnode" + suffix
	w.SudoersFile = "/etc/sudoers.d/certpush-nodetest-" + suffix
	w.CronFile = "certpush-nodetest-" + suffix
	for _, name := range []string{w.User} {
		if _, err := user.Lookup(name); err == nil {
			t.Fatalf("account %s exists already", name)
		}
	}
	t.Cleanup(w.cleanup)
	if err := os.MkdirAll("/srv", 0o755); err != nil {
		t.Fatal(err)
	}
	if w.Prefix, err = os.MkdirTemp("/srv", "certpush-nodetest-"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.Prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	w.Bin = filepath.Join(w.Prefix, "bin", "certnode")
	w.ForcedCommand = filepath.Join(w.Prefix, "lib", "certnode-forced-command")
	w.Home = filepath.Join(w.Prefix, "home")
	w.Incoming = filepath.Join(w.Home, "live")
	w.AuthorizedKeysDir = filepath.Join(w.Prefix, "authorized_keys")
	w.CertnodeConfig = filepath.Join(w.Prefix, "etc", "certnode.yaml")
	w.NginxSnippet = filepath.Join(w.Prefix, "nginx-certnode.conf")
	if w.Package {
		// The package's paths and account, its config a conffile.
		w.Bin = "/usr/bin/certnode"
		w.ForcedCommand = "/usr/share/certnode/certnode-forced-command"
		w.User = "certsync"
		w.Home = "/certsync"
		w.Incoming = "/certsync/live"
		w.CertnodeConfig = "/etc/certnode/certnode.yaml"
	}

	w.rootOwnedLive()
	w.adminAccess(ctx)
	w.writeManagement(state)
	return w
}

// cleanup removes what the tool under test made outside the fleet.
func (w *World) cleanup() {
	// The package's account goes with its purge.
	if _, err := user.Lookup(w.User); err == nil && !w.Package {
		if out, err := exec.Command("userdel", w.User).CombinedOutput(); err != nil {
			w.t.Errorf("cleanup: userdel %s: %v: %s", w.User, err, out)
		}
	}
	if _, err := user.LookupGroup(w.User); err == nil && !w.Package {
		_ = exec.Command("groupdel", w.User).Run()
	}
	if w.AdminUser != "" {
		if u, err := user.Lookup(w.AdminUser); err == nil && u.Uid == "0" {
			// -f: its uid (0) has processes, which is why userdel would refuse.
			if out, err := exec.Command("userdel", "-f", w.AdminUser).CombinedOutput(); err != nil {
				w.t.Errorf("cleanup: userdel %s: %v: %s", w.AdminUser, err, out)
			}
		}
	}
	os.Remove(w.SudoersFile)
	os.Remove(filepath.Join("/etc/cron.d", w.CronFile))
	if w.Prefix != "" {
		os.RemoveAll(w.Prefix)
	}
}

// rootOwnedLive makes the certificate tree the fleet laid out (with its
// bootstrap certificate, which nginx serves) root's, keys readable by the
// web server's group, as on a node where root runs certnode.
func (w *World) rootOwnedLive() {
	err := filepath.WalkDir(w.Host.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, 0, w.Fleet.GID); err != nil {
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
}

// adminAccess lets the admin in as AdminUser with AdminKey (its keys from
// a file of the test's), and the push account, with PAM as on Debian (the
// push account is locked, as useradd makes it), and restarts sshd.
//
// AdminUser is root under another name (uid 0) with /bin/sh as its shell
// and / as its home: sshd runs every command through the login shell,
// and root's own bash reads root's .bashrc each time, which on this kind
// of machine costs seconds a command.
func (w *World) adminAccess(ctx context.Context) {
	t := w.t
	w.AdminUser = "cpadmin" + w.suffix
	if _, err := user.Lookup(w.AdminUser); err == nil {
		t.Fatalf("account %s exists already", w.AdminUser)
	}
	if out, err := exec.Command("useradd", "--non-unique", "--uid", "0", "--gid", "0", "--no-create-home",
		"--home-dir", "/", "--shell", "/bin/sh", "--password", "*", w.AdminUser).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", w.AdminUser, err, out)
	}
	keys := filepath.Join(w.Dir, "admin")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	w.AdminKey = filepath.Join(keys, "id_admin")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nodetest-admin", "-f", w.AdminKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(keys, "authorized_keys"), []byte(read(t, w.AdminKey+".pub")), 0o600); err != nil {
		t.Fatal(err)
	}
	w.KnownHosts = w.Fleet.KnownHosts
	conf := read(t, w.Host.SSHConfig)
	conf = strings.Replace(conf, "AllowUsers "+w.Fleet.User, "AllowUsers "+w.Fleet.User+" "+w.AdminUser+" "+w.User, 1)
	conf = strings.Replace(conf, "UsePAM no", "UsePAM yes", 1)
	conf += "\nMatch User " + w.AdminUser + "\n\tAuthorizedKeysFile " + filepath.Join(keys, "authorized_keys") + "\n"
	if err := os.WriteFile(w.Host.SSHConfig, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Host.StopSSH(); err != nil {
		t.Fatal(err)
	}
	if err := w.Host.StartSSH(ctx); err != nil {
		t.Fatal(err)
	}
}

// writeManagement writes certpush.yaml: the certificate's hosts come only
// from HostsFile (empty until the management side adds the node), and
// host keys only from MgmtKnownHosts (empty until it trusts the node).
func (w *World) writeManagement(state string) {
	t := w.t
	conf := fmt.Sprintf(`state_dir: %s
roots: %s
ssh:
  user: %s
  identity: %s
  known_hosts: %s
  command: certnode
  incoming: %s
  timeout: 60s
certs:
  %s:
    domains: [%s]
    hosts_file: %s
    install: %s
    verify_ports: [%d]
`, state, w.Fleet.Roots, w.User, w.Fleet.Identity, w.MgmtKnownHosts, w.pushIncoming(), CertName, strings.Join(Domains, ", "), w.HostsFile, w.Mode, w.Host.TLSPort)
	if err := os.WriteFile(w.Config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.MgmtKnownHosts, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pushIncoming is incoming as the push account sees it: inside its
// chroot (the home) for cron.
func (w *World) pushIncoming() string {
	if w.Mode == "cron" {
		return strings.TrimPrefix(w.Incoming, w.Home)
	}
	return w.Incoming
}

// NodeAddress is the node's SSH address as certpush dials it.
func (w *World) NodeAddress() string { return w.Host.SSHAddr() }

// HostKeyFingerprint is the node's host key fingerprint, as an admin
// reads it on the node (ssh-keygen -lf).
func (w *World) HostKeyFingerprint() string { return ssh.FingerprintSHA256(w.Host.HostKey) }

// CertnodeDefaults are certnode.yaml's defaults for this node: nginx's config
// test and reload, the TLS check, keys readable by nginx's group.
func (w *World) CertnodeDefaults() map[string]any {
	return map[string]any{
		"test":           w.Host.NginxTest,
		"reload":         w.Host.NginxReload,
		"verify":         []string{w.Host.TLSAddr()},
		"verify_timeout": "5s",
		"group":          w.Fleet.User,
		"key_mode":       "0640",
	}
}

// Certs is certnode.yaml's certs.
func (w *World) Certs() map[string]any {
	return map[string]any{CertName: map[string]any{"domains": Domains}}
}

// PushAndCheck imports a new certificate into certpush and pushes it: the
// node must install it through the push account, and nginx must serve
// it. It returns how long the push took.
func (w *World) PushAndCheck() time.Duration {
	t := w.t
	t.Helper()
	is, err := w.Fleet.CA.Issue(devca.Leaf{Domains: Domains})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for n, data := range map[string][]byte{"cert.pem": is.Cert, "chain.pem": is.Chain, "key.pem": is.Key} {
		if err := os.WriteFile(filepath.Join(dir, n), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w.Certpush("import", CertName, "--cert", filepath.Join(dir, "cert.pem"), "--chain", filepath.Join(dir, "chain.pem"), "--key", filepath.Join(dir, "key.pem"))
	start := time.Now()
	out := w.Certpush("push", "--json")
	took := time.Since(start)
	var res struct {
		Certs []struct {
			Results []struct {
				Host, Result, Error string
			} `json:"results"`
		} `json:"certs"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("push --json: %v: %s", err, out)
	}
	want := "installed"
	if w.Mode == "cron" {
		want = "uploaded"
	}
	if len(res.Certs) != 1 || len(res.Certs[0].Results) != 1 || res.Certs[0].Results[0].Result != want {
		t.Fatalf("push: want one host %s, got %s", want, out)
	}
	if w.Mode == "cron" && w.Scheduler == "systemd" {
		w.runUnit("certnode-install.service")
	} else if w.Mode == "cron" {
		w.runCronJob()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	served, err := w.Host.ServedFingerprint(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := bundle.Fingerprint(is.Leaf); served != want {
		t.Fatalf("nginx serves %s after the push, want the pushed %s", served, want)
	}
	// certnode ran as root: the installed key is root's.
	fi, err := os.Stat(filepath.Join(w.Host.Root, "live", CertName, bundle.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o640 {
		t.Errorf("installed key: owner %d, mode %v; want root's, 0640 (key_mode)", st.Uid, fi.Mode().Perm())
	}
	return took
}

// Certpush runs certpush with the management config and returns stdout;
// a non-zero exit fails the test.
func (w *World) Certpush(args ...string) string {
	w.t.Helper()
	cmd := exec.Command(w.Bins.Certpush, append([]string{"--config", w.Config}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("certpush %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// CheckNode checks the node's setup as SECURITY.md recommends it: the
// account with the forced command as its shell, only incoming its own;
// the root-owned key file with the forced command; the sudo rule; the
// config with the trusted key; the cron job; the nginx snippet.
func (w *World) CheckNode() {
	t := w.t
	t.Helper()
	u, err := user.Lookup(w.User)
	if err != nil {
		t.Fatalf("the push account: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid >= 1000 {
		t.Errorf("%s has uid %d: not a system account", w.User, uid)
	}
	out, err := exec.Command("getent", "passwd", w.User).Output()
	if f := strings.Split(strings.TrimSpace(string(out)), ":"); err != nil || len(f) != 7 || f[6] != w.ForcedCommand || f[5] != w.Home {
		t.Errorf("passwd entry of %s: %q (%v); want home %s, shell %s", w.User, out, err, w.Home, w.ForcedCommand)
	}
	out, _ = exec.Command("getent", "shadow", w.User).Output()
	if f := strings.Split(string(out), ":"); len(f) < 2 || (f[1] != "!" && f[1] != "*" && f[1] != "!*" && f[1] != "!!") {
		t.Errorf("%s has a password field %q, want none", w.User, out)
	}
	type fileWant struct {
		path     string
		mode     fs.FileMode
		uid, gid int
	}
	files := []fileWant{
		{w.Home, fs.ModeDir | 0o755, 0, 0},
		{w.Incoming, fs.ModeDir | 0o755, uid, gid},
		{w.Bin, 0o755, 0, 0},
		{w.ForcedCommand, 0o755, 0, 0},
		{w.AuthorizedKeysDir, fs.ModeDir | 0o755, 0, 0},
		{filepath.Join(w.AuthorizedKeysDir, w.User), 0o644, 0, 0},
		{w.CertnodeConfig, 0o644, 0, 0},
		{w.NginxSnippet, 0o644, 0, 0},
	}
	if w.Scheduler == "cron" {
		files = append(files, fileWant{filepath.Join("/etc/cron.d", w.CronFile), 0o644, 0, 0})
	}
	if w.Mode == "now" {
		files = append(files, fileWant{w.SudoersFile, 0o440, 0, 0})
	}
	for _, c := range files {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode() != c.mode || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("%s: %v %d:%d, want %v %d:%d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
	}
	if w.Package {
		w.checkPackage()
	} else if got, want := read(t, w.ForcedCommand), read(t, "../../hooks/certnode-forced-command"); got != want {
		t.Error("the installed forced command is not hooks/certnode-forced-command")
	}
	keys := read(t, filepath.Join(w.AuthorizedKeysDir, w.User))
	want := fmt.Sprintf("restrict,command=\"%s --certnode %s --config %s\" %s\n", w.ForcedCommand, w.Bin, w.CertnodeConfig, w.PushKey)
	if w.Mode == "cron" {
		want = "restrict " + w.PushKey + "\n"
	}
	if !strings.Contains(keys, want) {
		t.Errorf("authorized_keys:\n%s\nwant the line %q", keys, want)
	}
	if w.Mode == "now" {
		if out, err := exec.Command("visudo", "-cf", w.SudoersFile).CombinedOutput(); err != nil {
			t.Errorf("visudo -cf %s: %v: %s", w.SudoersFile, err, out)
		}
		if s := read(t, w.SudoersFile); !strings.Contains(s, w.User+" ALL=(root) NOPASSWD: "+w.Bin+" ^--config ") {
			t.Errorf("sudo rule:\n%s", s)
		}
	} else if _, err := os.Lstat(w.SudoersFile); err == nil {
		t.Errorf("install: cron, yet there is a sudo rule %s", w.SudoersFile)
	}
	if s := read(t, w.Host.SSHConfig); (w.Mode == "cron") != strings.Contains(s, "\tChrootDirectory "+w.Home+"\n\tForceCommand internal-sftp\n") {
		t.Errorf("sshd_config: chroot and internal-sftp only for cron (mode %s):\n%s", w.Mode, s)
	}
	var nc struct {
		Root        string   `yaml:"root"`
		Incoming    string   `yaml:"incoming"`
		TrustedKeys []string `yaml:"trusted_keys"`
	}
	if err := yaml.Unmarshal([]byte(read(t, w.CertnodeConfig)), &nc); err != nil {
		t.Errorf("certnode.yaml: %v", err)
	}
	if nc.Root != w.Host.Root || nc.Incoming != w.Incoming || len(nc.TrustedKeys) != 1 || nc.TrustedKeys[0] != w.SigningKey {
		t.Errorf("certnode.yaml: %+v; want root %s, incoming %s, trusted_keys [%s]", nc, w.Host.Root, w.Incoming, w.SigningKey)
	}
	if w.Scheduler == "systemd" {
		w.checkTimer("certnode-install.timer")
		if _, err := os.Lstat(filepath.Join("/etc/cron.d", w.CronFile)); err == nil {
			t.Errorf("the systemd timer, yet there is a cron file %s", w.CronFile)
		}
	} else if s := read(t, filepath.Join("/etc/cron.d", w.CronFile)); !strings.Contains(s, " root "+w.Bin+" --config "+w.CertnodeConfig+" install") {
		t.Errorf("cron file:\n%s", s)
	}
	if s := read(t, w.NginxSnippet); !strings.Contains(s, "ssl_certificate_key "+filepath.Join(w.Host.Root, "live", CertName, "privkey.pem")+";") {
		t.Errorf("nginx snippet:\n%s", s)
	}
	if s := read(t, w.Host.SSHConfig); !strings.Contains(s, "Match User "+w.User+"\n\tAuthorizedKeysFile "+w.AuthorizedKeysDir+"/%u\n") {
		t.Errorf("sshd_config has no Match block for %s:\n%s", w.User, s)
	}
	// The account runs nothing but certnode install and SFTP.
	for _, cmd := range []string{"id", "/bin/sh -c id"} {
		c := exec.Command("ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
			"-o", "UserKnownHostsFile="+w.Fleet.KnownHosts, "-i", w.Fleet.Identity, "-p", strconv.Itoa(w.Host.SSHPort),
			w.User+"@127.0.0.1", cmd)
		out, err := c.CombinedOutput()
		if w.Mode == "cron" {
			// internal-sftp answers whatever is asked: never a command.
			if strings.Contains(string(out), "uid=") {
				t.Errorf("ssh %s %q ran: %q", w.User, cmd, out)
			}
			continue
		}
		if err == nil || !strings.Contains(string(out), "certnode-forced-command: refused") || strings.Contains(string(out), "uid=") {
			t.Errorf("ssh %s %q: %v %q; want refused by the forced command", w.User, cmd, err, out)
		}
	}
}

// Known checks the management side: the node's host key in certpush's
// known_hosts (present or not) and the node in the host list.
func (w *World) Known(want bool) {
	t := w.t
	t.Helper()
	kh, _ := os.ReadFile(w.MgmtKnownHosts)
	hasKey := strings.Contains(string(kh), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(w.Host.HostKey))))
	list, _ := os.ReadFile(w.HostsFile)
	listed := strings.Contains(string(list), w.NodeAddress()+"\n")
	if hasKey != want || listed != want {
		t.Errorf("host key in known_hosts: %v, node in %s: %v; want %v\nknown_hosts:\n%s", hasKey, w.HostsFile, listed, want, kh)
	}
}

// runCronJob runs the job of /etc/cron.d/CronFile as cron would (as root,
// through /bin/sh), standing in for the minutes until it fires.
func (w *World) runCronJob() {
	t := w.t
	t.Helper()
	for _, l := range strings.Split(read(t, filepath.Join("/etc/cron.d", w.CronFile)), "\n") {
		f := strings.Fields(l)
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[5] != "root" {
			t.Fatalf("cron job runs as %s, not root: %q", f[5], l)
		}
		job := strings.Join(f[6:], " ")
		if out, err := exec.Command("/bin/sh", "-c", job).CombinedOutput(); err != nil {
			t.Fatalf("cron job %q: %v\n%s", job, err, out)
		}
		return
	}
	t.Fatal("no job in the cron file")
}
