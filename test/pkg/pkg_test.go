package pkg_test

import (
	"bytes"
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

	"github.com/certpush/certpush/test/nodetest"
)

// forcedCommand is the packaged forced command, also certsync's shell.
const forcedCommand = "/usr/share/certnode/certnode-forced-command"

// The units the packages ship.
var units = []string{
	"/usr/lib/systemd/system/certpush-renew.service",
	"/usr/lib/systemd/system/certpush-renew.timer",
	"/usr/lib/systemd/system/certnode-install.service",
	"/usr/lib/systemd/system/certnode-install.timer",
	"/usr/lib/systemd/system/certnode-pull-boot.service",
	"/usr/lib/systemd/system/certnode-pull.service",
	"/usr/lib/systemd/system/certnode-pull.timer",
	"/usr/lib/systemd/system/certpush-renew-lease.service",
	"/usr/lib/systemd/system/certpush-renew-lease.timer",
}

// TestDebianPackages builds both packages with make deb, runs lintian on
// them, installs them with dpkg, checks what they put where, verifies
// the units, upgrades to a newer build keeping a changed conffile, then
// removes (the account stays) and purges (everything goes). It changes
// the machine, so it runs only as root on Debian, and refuses to start
// when certpush, certnode or the certsync account are there already. It
// purges both packages at the end, failed or not.
func TestDebianPackages(t *testing.T) {
	needRootDebian(t)
	for _, tool := range []string{"dpkg", "dpkg-deb", "lintian", "systemd-analyze", "make", "visudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/deps.sh", tool)
		}
	}
	// test/ansible and test/puppet install certnode too: one at a time.
	nodetest.LockDpkg(t)
	nodetest.NoPackages(t)

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v1 := strings.TrimSpace(run(t, filepath.Join(root, "packaging/version.sh")))
	v2 := v1 + "+pkgtest2"
	if err := exec.Command("dpkg", "--compare-versions", v2, "gt", v1).Run(); err != nil {
		t.Fatalf("%s is not newer than %s for dpkg", v2, v1)
	}
	// The first build is what `make deb` does by itself (version from git).
	push1, node1 := nodetest.MakeDeb(t, t.TempDir(), "")
	push2, node2 := nodetest.MakeDeb(t, t.TempDir(), v2)
	t.Logf("built 2 versions in %s", time.Since(start).Round(time.Second))

	lintian(t, push1, node1)

	t.Cleanup(func() { purgeAll(t) })
	run(t, "dpkg", "-i", push1, node1)
	checkInstalled(t, root, v1)
	checkAccountOverSSH(t)
	checkInitPaths(t)

	// The admin edits the node's config and gives the account a shell
	// (install: now); an upgrade keeps both.
	changed := readFile(t, "/etc/certnode/certnode.yaml") + "# changed by the admin\n"
	if err := os.WriteFile("/etc/certnode/certnode.yaml", []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "usermod", "--shell", "/bin/sh", "certsync")
	uid := lookup(t).Uid
	run(t, "dpkg", "-i", push2, node2)
	if v := status(t, "certnode"); v != "installed "+v2 {
		t.Errorf("after the upgrade certnode is %q, want installed %s", v, v2)
	}
	if v := status(t, "certpush"); v != "installed "+v2 {
		t.Errorf("after the upgrade certpush is %q, want installed %s", v, v2)
	}
	if got := readFile(t, "/etc/certnode/certnode.yaml"); got != changed {
		t.Errorf("the upgrade replaced the changed /etc/certnode/certnode.yaml:\n%s", got)
	}
	if got := strings.TrimSpace(run(t, "/usr/bin/certnode", "version")); got != "certnode "+v2 {
		t.Errorf("certnode version after the upgrade: %q", got)
	}
	u := lookup(t)
	if u.Uid != uid {
		t.Errorf("the upgrade made the account anew: uid %s, was %s", u.Uid, uid)
	}
	if sh := passwdField(t, 6); sh != "/bin/sh" {
		t.Errorf("the upgrade reset the account's shell to %s", sh)
	}
	checkMode(t, "/var/lib/certpush", fs.ModeDir|0o700, 0, 0)
	checkMode(t, "/certsync/live", fs.ModeDir|0o755, atoi(t, u.Uid), atoi(t, u.Gid))
	// An account an earlier package made with nologin (which broke
	// install: now) gets the forced command as its shell.
	run(t, "usermod", "--shell", "/usr/sbin/nologin", "certsync")
	run(t, "dpkg", "-i", node2)
	if sh := passwdField(t, 6); sh != forcedCommand {
		t.Errorf("reinstalling left the nologin account with shell %s, want %s", sh, forcedCommand)
	}

	// Remove: programs go, conffiles and the account stay.
	run(t, "dpkg", "-r", "certpush", "certnode")
	for _, p := range []string{"certpush", "certnode"} {
		if v := status(t, p); v != "config-files "+v2 {
			t.Errorf("after dpkg -r %s is %q, want config-files", p, v)
		}
	}
	for _, f := range append([]string{"/usr/bin/certpush", "/usr/bin/certnode", "/usr/share/certnode/certnode-forced-command"}, units...) {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("dpkg -r left %s", f)
		}
	}
	if got := readFile(t, "/etc/certnode/certnode.yaml"); got != changed {
		t.Error("dpkg -r changed /etc/certnode/certnode.yaml")
	}
	if _, err := os.Stat("/etc/certpush/certpush.yaml"); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}
	if lookup(t).Uid != uid {
		t.Error("dpkg -r changed the account")
	}
	checkMode(t, "/certsync/live", fs.ModeDir|0o755, atoi(t, u.Uid), atoi(t, u.Gid))

	// Purge: the account, its directories and the conffiles go.
	run(t, "dpkg", "-P", "certpush", "certnode")
	checkPurged(t)
}

// needRootDebian skips the test where it cannot run, except in CI.
func needRootDebian(t *testing.T) {
	t.Helper()
	why := ""
	if os.Getuid() != 0 {
		why = "not root"
	} else if _, err := os.Stat("/etc/debian_version"); err != nil {
		why = "not Debian"
	} else if _, err := exec.LookPath("dpkg"); err != nil {
		why = "no dpkg"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run the package test: %s", why)
	}
	t.Skipf("installs packages: needs root on Debian (%s)", why)
}

func checkInstalled(t *testing.T, root, version string) {
	t.Helper()
	for _, p := range []string{"certpush", "certnode"} {
		if v := status(t, p); v != "installed "+version {
			t.Errorf("%s is %q, want installed %s", p, v, version)
		}
		if got := strings.TrimSpace(run(t, "/usr/bin/"+p, "version")); got != p+" "+version {
			t.Errorf("%s version: %q, want %s %s", p, got, p, version)
		}
	}
	files := []struct {
		path string
		mode fs.FileMode
	}{
		{"/usr/bin/certpush", 0o755},
		{"/usr/bin/certnode", 0o755},
		{"/etc/certpush", fs.ModeDir | 0o755},
		{"/etc/certpush/certpush.yaml", 0o644},
		{"/var/lib/certpush", fs.ModeDir | 0o700},
		{"/usr/share/certpush/certbot-deploy-hook", 0o755},
		{"/etc/certnode", fs.ModeDir | 0o755},
		{"/etc/certnode/certnode.yaml", 0o644},
		{"/usr/share/certnode/certnode-forced-command", 0o755},
		{"/usr/share/certnode/sudoers.certnode", 0o644},
		{"/usr/share/certnode/sshd_config.certpush", 0o644},
		{"/usr/share/doc/certpush/packages.md", 0o644},
		{"/usr/share/doc/certnode/packages.md", 0o644},
		{"/certsync", fs.ModeDir | 0o755},
	}
	for _, f := range files {
		checkMode(t, f.path, f.mode, 0, 0)
	}
	for _, u := range units {
		checkMode(t, u, 0o644, 0, 0)
	}
	for conf, src := range map[string]string{
		"/etc/certpush/certpush.yaml": "inventory/certpush.yaml",
		"/etc/certnode/certnode.yaml": "inventory/certnode.yaml",
	} {
		if readFile(t, conf) != readFile(t, filepath.Join(root, src)) {
			t.Errorf("%s is not %s", conf, src)
		}
	}
	for p, conf := range map[string]string{"certpush": "/etc/certpush/certpush.yaml", "certnode": "/etc/certnode/certnode.yaml"} {
		out := run(t, "dpkg-query", "-W", "-f=${Conffiles}", p)
		if !strings.Contains(out, conf+" ") {
			t.Errorf("%s's conffiles %q do not hold %s", p, out, conf)
		}
	}

	// The node files name the package's paths, not /usr/local.
	for _, f := range []string{"/usr/share/certnode/certnode-forced-command", "/usr/share/certnode/sudoers.certnode", "/usr/share/certnode/sshd_config.certpush", "/usr/share/certpush/certbot-deploy-hook"} {
		if s := readFile(t, f); strings.Contains(s, "/usr/local/") {
			t.Errorf("%s names /usr/local/", f)
		}
	}
	if s := readFile(t, "/usr/share/certnode/certnode-forced-command"); !strings.Contains(s, "\ncertnode=/usr/bin/certnode\n") {
		t.Error("the forced command does not default to /usr/bin/certnode")
	}
	if s := readFile(t, "/usr/share/certnode/sshd_config.certpush"); !strings.Contains(s, `command="/usr/share/certnode/certnode-forced-command"`) {
		t.Error("the sshd snippet does not name the packaged forced command")
	}
	if s := readFile(t, "/usr/share/certnode/sudoers.certnode"); !strings.Contains(s, "NOPASSWD: /usr/bin/certnode ^--config") {
		t.Error("the sudoers rule does not name /usr/bin/certnode")
	}
	run(t, "visudo", "-cf", "/usr/share/certnode/sudoers.certnode")
	run(t, "sh", "-n", "/usr/share/certnode/certnode-forced-command")
	// The certbot hook is shipped, not enabled, and works when run.
	if ents, err := os.ReadDir("/etc/letsencrypt/renewal-hooks/deploy"); err == nil {
		for _, e := range ents {
			if strings.Contains(e.Name(), "certpush") {
				t.Errorf("the package enabled the certbot hook: /etc/letsencrypt/renewal-hooks/deploy/%s", e.Name())
			}
		}
	}
	hook := exec.Command("/usr/share/certpush/certbot-deploy-hook")
	hook.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := hook.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "RENEWED_LINEAGE is not set") {
		t.Errorf("certbot hook without RENEWED_LINEAGE: %v: %s", err, out)
	}

	// The account: system, the forced command as its shell, a home it cannot write, and
	// nothing but incoming is its.
	u := lookup(t)
	if atoi(t, u.Uid) >= 1000 {
		t.Errorf("certsync has uid %s, not a system account", u.Uid)
	}
	if u.HomeDir != "/certsync" {
		t.Errorf("certsync's home is %s", u.HomeDir)
	}
	if sh := passwdField(t, 6); sh != forcedCommand {
		t.Errorf("certsync's shell is %s", sh)
	}
	if pw := shadowPassword(t); pw != "!" && pw != "*" && pw != "!*" {
		t.Errorf("certsync has a password field %q, want a locked one", pw)
	}
	checkMode(t, "/certsync/live", fs.ModeDir|0o755, atoi(t, u.Uid), atoi(t, u.Gid))
	// /run and /tmp left out: other tests on the machine make and
	// remove accounts whose uid certsync may reuse (sudo's timestamps).
	owned := strings.Fields(run(t, "find", "/", "-xdev", "(", "-path", "/run", "-o", "-path", "/tmp", ")", "-prune", "-o", "(", "-user", "certsync", "-o", "-group", "certsync", ")", "-print"))
	if len(owned) != 1 || owned[0] != "/certsync/live" {
		t.Errorf("certsync owns %q, want only /certsync/live", owned)
	}

	// Every unit passes systemd-analyze verify (which also checks that
	// ExecStart's binary is there).
	cmd := exec.Command("systemd-analyze", append([]string{"verify", "--man=no"}, units...)...)
	out, err = cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Installing enables and starts nothing.
	for _, l := range []string{"/etc/systemd/system/timers.target.wants/certpush-renew.timer", "/etc/systemd/system/timers.target.wants/certnode-install.timer", "/etc/systemd/system/timers.target.wants/certnode-pull.timer", "/etc/systemd/system/timers.target.wants/certpush-renew-lease.timer"} {
		if _, err := os.Lstat(l); err == nil {
			t.Errorf("the package enabled %s", l)
		}
	}
}

func checkPurged(t *testing.T) {
	t.Helper()
	for _, p := range []string{"certpush", "certnode"} {
		if v := status(t, p); v != "not-installed " && v != "" {
			t.Errorf("after dpkg -P %s is %q", p, v)
		}
	}
	if _, err := user.Lookup("certsync"); err == nil {
		t.Error("dpkg -P left the account certsync")
	}
	if _, err := user.LookupGroup("certsync"); err == nil {
		t.Error("dpkg -P left the group certsync")
	}
	for _, f := range []string{"/certsync", "/etc/certpush", "/etc/certnode", "/var/lib/certpush", "/usr/share/certnode", "/usr/share/certpush"} {
		if _, err := os.Lstat(f); err == nil {
			out, _ := exec.Command("find", f, "-ls").CombinedOutput()
			t.Errorf("dpkg -P left %s:\n%s", f, out)
		}
	}
}

// lintian fails the test on any error; warnings are logged.
func lintian(t *testing.T, debs ...string) {
	t.Helper()
	cmd := exec.Command("lintian", append([]string{"--fail-on", "error", "--suppress-tags", "spelling-error-in-binary"}, debs...)...)
	out, err := cmd.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") {
			t.Errorf("lintian: %s", l)
		} else if strings.HasPrefix(l, "W: ") {
			t.Logf("lintian: %s", l)
		}
	}
	if err != nil {
		t.Errorf("lintian: %v\n%s", err, out)
	}
}

// purgeAll puts the machine back as it was: both packages purged, and
// what a failing postrm might have left removed.
func purgeAll(t *testing.T) {
	if out, err := exec.Command("dpkg", "-P", "certpush", "certnode").CombinedOutput(); err != nil {
		t.Logf("cleanup: dpkg -P: %v: %s", err, out)
		if out, err := exec.Command("dpkg", "-P", "--force-all", "certpush", "certnode").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg -P --force-all: %v: %s", err, out)
		}
	}
	if _, err := user.Lookup("certsync"); err == nil {
		t.Error("cleanup: the account certsync was left; deleting it")
		_ = exec.Command("userdel", "certsync").Run()
	}
	if _, err := user.LookupGroup("certsync"); err == nil {
		_ = exec.Command("groupdel", "certsync").Run()
	}
	for _, f := range []string{"/usr/bin/certpush", "/usr/bin/certnode", "/certsync"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("cleanup: %s was left; deleting it", f)
			_ = os.RemoveAll(f)
		}
	}
}

// status is dpkg's "STATUS VERSION" of a package.
func status(t *testing.T, p string) string {
	t.Helper()
	out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", p).Output()
	return string(out)
}

func checkMode(t *testing.T, path string, mode fs.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
	}
}

func lookup(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup("certsync")
	if err != nil {
		t.Fatalf("the package did not create certsync: %v", err)
	}
	return u
}

// passwdField is field i (0-based) of certsync's passwd entry.
func passwdField(t *testing.T, i int) string {
	t.Helper()
	f := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "certsync")), ":")
	if len(f) != 7 {
		t.Fatalf("getent passwd certsync: %q", f)
	}
	return f[i]
}

func shadowPassword(t *testing.T) string {
	t.Helper()
	f := strings.Split(strings.TrimSpace(run(t, "getent", "shadow", "certsync")), ":")
	if len(f) < 2 {
		t.Fatalf("getent shadow certsync: %q", f)
	}
	return f[1]
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}
