package pkg_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeInstallPaths runs make install with another PREFIX into a
// DESTDIR and checks that the installed certpush init prints that
// PREFIX's forced command and certnode, and that those are the files
// make install put there.
func TestMakeInstallPaths(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	const prefix = "/opt/certpush-test"
	run(t, "make", "-C", root, "install", "PREFIX="+prefix, "DESTDIR="+dest)
	for _, f := range []string{"/bin/certpush", "/bin/certnode", "/lib/certpush/certnode-forced-command", "/share/certpush/sudoers.certnode"} {
		if _, err := os.Stat(filepath.Join(dest, prefix, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	out := initOutput(t, filepath.Join(dest, prefix, "bin/certpush"))
	for _, want := range []string{
		`restrict,command="` + prefix + `/lib/certpush/certnode-forced-command" ssh-ed25519 `,
		"NOPASSWD: " + prefix + "/bin/certnode ^--config /etc/certnode/certnode\\.yaml install",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("certpush init does not print %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/usr/local/") {
		t.Errorf("certpush init names /usr/local:\n%s", out)
	}
	// The sudoers file make install ships says the same as init.
	if s := readFile(t, filepath.Join(dest, prefix, "share/certpush/sudoers.certnode")); !strings.Contains(s, "NOPASSWD: "+prefix+"/bin/certnode ^--config") {
		t.Errorf("installed sudoers.certnode does not name %s/bin/certnode:\n%s", prefix, s)
	}
}

// initOutput runs certpush init with a fresh state directory and push key
// and returns what it printed.
func initOutput(t *testing.T, certpush string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pkgtest", "-f", filepath.Join(dir, "id_push"))
	conf := filepath.Join(dir, "certpush.yaml")
	cfg := "state_dir: " + filepath.Join(dir, "state") + "\nssh:\n  identity: " + filepath.Join(dir, "id_push") +
		"\nhosts:\n  web1: {address: 127.0.0.1}\ncerts:\n  example.com:\n    domains: [example.com]\n    hosts: [web1]\n"
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return run(t, certpush, "--config", conf, "init")
}
