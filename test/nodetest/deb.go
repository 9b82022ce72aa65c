package nodetest

import (
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// DpkgLock is the file every test that installs the certpush or certnode
// package holds (flock, exclusive) from before its first check of the
// machine until after its purge: test/pkg, test/ansible and test/puppet
// are separate packages, which go test runs in parallel, and a package
// installed by one changes what the others see (/usr/bin/certnode, the
// certsync account, dpkg's own lock).
const DpkgLock = "/tmp/certpush-dpkg-test.lock"

// LockDpkg takes DpkgLock, waiting for another test that holds it, and
// releases it when the test and its cleanups are done. Call it before
// registering the cleanup that purges, so the purge runs under the lock.
func LockDpkg(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(DpkgLock, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("waiting for %s (another test installs packages)", DpkgLock)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// MakeDeb builds the certpush and certnode packages for this machine's
// architecture with `make deb` into dist and returns their paths. An
// empty version is make deb's own (packaging/version.sh, from git).
func MakeDeb(t *testing.T, dist, version string) (certpush, certnode string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	arch := strings.TrimSpace(output(t, "dpkg", "--print-architecture"))
	if arch != runtime.GOARCH {
		t.Fatalf("dpkg architecture %s is not GOARCH %s", arch, runtime.GOARCH)
	}
	args := []string{"-C", root, "deb", "DEB_ARCH=" + arch, "DIST=" + dist}
	if version == "" {
		version = strings.TrimSpace(output(t, filepath.Join(root, "packaging/version.sh")))
	} else {
		args = append(args, "DEB_VERSION="+version)
	}
	cmd := exec.Command("make", args...)
	// packaging/deb.sh's staging directory, not the work tree's build/.
	cmd.Env = append(os.Environ(), "STAGE="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	deb := func(p string) string {
		f := filepath.Join(dist, p+"_"+version+"_"+arch+".deb")
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("make deb did not build %s: %v", f, err)
		}
		return f
	}
	return deb("certpush"), deb("certnode")
}

// NoPackages fails the test when certpush, certnode or what they make are
// on the machine already: a test that installs them would take over (and
// its purge delete) what an admin set up.
func NoPackages(t *testing.T) {
	t.Helper()
	for _, p := range []string{"certpush", "certnode"} {
		if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", p).Output(); len(out) > 0 && string(out) != "not-installed" {
			t.Fatalf("package %s is on this machine already (%s): the test would replace it", p, out)
		}
	}
	for _, f := range []string{"/usr/bin/certpush", "/usr/bin/certnode", "/certsync", "/etc/certnode"} {
		if _, err := os.Lstat(f); err == nil {
			t.Fatalf("%s exists already: the test would replace it", f)
		}
	}
	if _, err := user.Lookup("certsync"); err == nil {
		t.Fatal("the account certsync exists already: the test's purge would delete it")
	}
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out)
}

// checkPackage checks that certnode is the installed package, its files
// (the forced command among them) as it shipped them; only its conffile,
// certnode.yaml, may differ.
func (w *World) checkPackage() {
	t := w.t
	t.Helper()
	if st := strings.TrimSpace(output(t, "dpkg-query", "-W", "-f=${Status}", "certnode")); st != "install ok installed" {
		t.Errorf("dpkg -s certnode: %q, want install ok installed", st)
	}
	for _, f := range []string{w.Bin, w.ForcedCommand} {
		if out, err := exec.Command("dpkg", "-S", f).Output(); err != nil || !strings.HasPrefix(string(out), "certnode: ") {
			t.Errorf("dpkg -S %s: %q %v; want the certnode package's", f, out, err)
		}
	}
	out, _ := exec.Command("dpkg", "--verify", "certnode").CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !strings.HasSuffix(l, " c "+w.CertnodeConfig) {
			t.Errorf("dpkg --verify certnode: %q: a packaged file was changed", l)
		}
	}
}

// unitFile is where systemd finds unit: the admin's directory first, then
// the packages'.
func unitFile(t *testing.T, unit string) string {
	t.Helper()
	for _, d := range []string{"/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"} {
		if fi, err := os.Lstat(filepath.Join(d, unit)); err == nil && fi.Mode().IsRegular() {
			return filepath.Join(d, unit)
		}
	}
	t.Fatalf("no unit file %s", unit)
	return ""
}

// checkTimer checks that timer and its service are there, that systemd
// accepts both (systemd-analyze verify, which also finds ExecStart's
// binary), that their ExecStart runs this node's certnode with its config,
// and that timer is enabled: the link in timers.target.wants that
// `systemctl enable` makes, read from the files (systemd may not be
// running here, so nothing is started).
func (w *World) checkTimer(timer string) {
	t := w.t
	t.Helper()
	service := strings.TrimSuffix(timer, ".timer") + ".service"
	tf, sf := unitFile(t, timer), unitFile(t, service)
	if w.Package {
		for _, f := range []string{tf, sf} {
			if out, err := exec.Command("dpkg", "-S", f).Output(); err != nil || !strings.HasPrefix(string(out), "certnode: ") {
				t.Errorf("%s is not the certnode package's: %q %v", f, out, err)
			}
		}
	}
	if out, err := exec.Command("systemd-analyze", "verify", "--man=no", tf, sf).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s %s: %v\n%s", tf, sf, err, out)
	}
	if argv := execStart(t, sf); len(argv) < 3 || argv[0] != w.Bin || argv[1] != "--config" || argv[2] != w.CertnodeConfig {
		t.Errorf("%s: ExecStart %q, want %s --config %s ...", sf, argv, w.Bin, w.CertnodeConfig)
	}
	link := filepath.Join("/etc/systemd/system/timers.target.wants", timer)
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		t.Errorf("%s is not enabled: %v", timer, err)
	} else if real, _ := filepath.EvalSymlinks(tf); target != real {
		t.Errorf("%s points to %s, want %s", link, target, tf)
	}
	if out, _ := exec.Command("systemctl", "is-enabled", timer).Output(); strings.TrimSpace(string(out)) != "enabled" {
		t.Errorf("systemctl is-enabled %s: %q", timer, out)
	}
}

// execStart is the argv of a unit's ExecStart (the units quote nothing).
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	for _, l := range strings.Split(read(t, unit), "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}

// runUnit runs service's ExecStart as systemd would (as root), standing in
// for the minutes until its timer fires.
func (w *World) runUnit(service string) {
	t := w.t
	t.Helper()
	argv := execStart(t, unitFile(t, service))
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %q: %v\n%s", service, argv, err, out)
	}
}

// purge puts the machine back: what the tool under test enabled disabled,
// the package purged (its account, home and conffile with it), and
// anything the purge left reported and removed.
func (w *World) purge() {
	t := w.t
	units := []string{"certnode-install.timer", "certnode-pull.timer", "certnode-pull-boot.service"}
	if _, err := os.Stat("/usr/lib/systemd/system/certnode-install.timer"); err == nil {
		if out, err := exec.Command("systemctl", append([]string{"disable", "--quiet"}, units...)...).CombinedOutput(); err != nil {
			t.Errorf("cleanup: systemctl disable: %v: %s", err, out)
		}
	}
	if out, err := exec.Command("dpkg", "-P", "certnode").CombinedOutput(); err != nil {
		t.Errorf("cleanup: dpkg -P certnode: %v: %s", err, out)
		_ = exec.Command("dpkg", "-P", "--force-all", "certnode").Run()
	}
	if _, err := user.Lookup("certsync"); err == nil {
		t.Error("cleanup: dpkg -P left the account certsync; deleting it")
		_ = exec.Command("userdel", "certsync").Run()
	}
	if _, err := user.LookupGroup("certsync"); err == nil {
		t.Error("cleanup: dpkg -P left the group certsync; deleting it")
		_ = exec.Command("groupdel", "certsync").Run()
	}
	left, _ := filepath.Glob("/etc/systemd/system/*.wants/certnode-*")
	for _, f := range append([]string{"/usr/bin/certnode", "/certsync", "/etc/certnode", "/usr/share/certnode"}, left...) {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("cleanup: %s was left; deleting it", f)
			_ = os.RemoveAll(f)
		}
	}
}
