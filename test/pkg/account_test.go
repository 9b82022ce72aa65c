package pkg_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// checkAccountOverSSH logs in as the packaged certsync account through a
// real sshd on loopback that uses the packaged Match block (keys read from
// a test directory instead of /etc/ssh/authorized_keys) and the packaged
// forced command in the key's line. The account's shell is the forced
// command: SFTP into incoming works, `certnode install` reaches root's
// certnode through the packaged sudoers rule, and everything else is
// refused.
func checkAccountOverSSH(t *testing.T) {
	t.Helper()
	start := time.Now()
	// sshd reads the key file as certsync: a directory it can enter
	// (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "certpush-pkgtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "host_key"))
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "id_push"))
	pub := strings.TrimSpace(readFile(t, filepath.Join(dir, "id_push.pub")))
	line := fmt.Sprintf("restrict,command=%q %s\n", forcedCommand, pub)
	if err := os.WriteFile(filepath.Join(keys, "certsync"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	// The packaged sudoers rule, for the length of this check.
	sudoers := "/etc/sudoers.d/certnode-pkgtest"
	run(t, "install", "-m", "0440", "/usr/share/certnode/sudoers.certnode", sudoers)
	defer os.Remove(sudoers)

	port := freePort(t)
	match := packagedMatch(t, keys)
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
UsePAM yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
Subsystem sftp /usr/lib/openssh/sftp-server
AllowUsers certsync
UseDNS no
%s`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "sshd.pid"), match)
	cfgPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "/usr/sbin/sshd", "-t", "-f", cfgPath)
	var sshdLog bytes.Buffer
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfgPath)
	sshd.Stderr = &sshdLog
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sshd.Process.Kill()
		_ = sshd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", sshdLog.String())
		}
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(readFile(t, filepath.Join(dir, "host_key.pub"))))
	if err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(kh)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey([]byte(readFile(t, filepath.Join(dir, "id_push"))))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{User: "certsync", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hostKeys, Timeout: 5 * time.Second}
	var c *ssh.Client
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err = ssh.Dial("tcp", addr, cfg); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("log in as certsync: %v", err)
	}
	defer c.Close()

	for _, cmd := range []string{"id", "/bin/sh -c id", "sudo -n /bin/sh -c id", "certnode status", ""} {
		code, out := remote(t, c, cmd)
		if code == 0 || !strings.Contains(out, "certnode-forced-command: refused") || strings.Contains(out, "uid=") {
			t.Errorf("certsync ran %q: exit %d, output %q; want refused", cmd, code, out)
		}
	}
	// certnode install reaches root's certnode (sudo lets it through;
	// certnode itself then finds no such upload). What it makes in its
	// root, /etc/certnode (a lock, status), goes afterwards: purge
	// leaves a root with anything else in it.
	before := map[string]bool{}
	if ents, err := os.ReadDir("/etc/certnode"); err == nil {
		for _, e := range ents {
			before[e.Name()] = true
		}
	}
	defer func() {
		ents, _ := os.ReadDir("/etc/certnode")
		for _, e := range ents {
			if !before[e.Name()] {
				os.RemoveAll(filepath.Join("/etc/certnode", e.Name()))
			}
		}
	}()
	code, out := remote(t, c, "certnode install --json --id 0123456789abcdef example.com")
	if strings.Contains(out, "refused") || strings.Contains(out, "sudo:") || !strings.Contains(out, "example.com") {
		t.Errorf("certnode install through the forced command: exit %d, output %q; want certnode's own answer", code, out)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp as certsync: %v", err)
	}
	defer sc.Close()
	f, err := sc.Create("/certsync/live/pkgtest")
	if err != nil {
		t.Fatalf("sftp create in incoming: %v", err)
	}
	f.Close()
	if err := sc.Remove("/certsync/live/pkgtest"); err != nil {
		t.Errorf("sftp remove in incoming: %v", err)
	}
	if f, err := sc.Create("/certsync/pkgtest"); err == nil {
		f.Close()
		t.Error("certsync could write /certsync itself")
	}
	t.Logf("certsync over ssh: checked in %s", time.Since(start).Round(time.Millisecond))
}

// remote runs cmd in a new session and returns its exit code and output.
func remote(t *testing.T, c *ssh.Client, cmd string) (int, string) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdin = strings.NewReader("")
	s.Stdout, s.Stderr = &stdout, &stderr
	if cmd == "" {
		err = s.Shell()
		if err == nil {
			err = s.Wait()
		}
	} else {
		err = s.Run(cmd)
	}
	out := stdout.String() + stderr.String()
	if ee, ok := err.(*ssh.ExitError); ok {
		return ee.ExitStatus(), out
	}
	if err != nil {
		return -1, out + err.Error()
	}
	return 0, out
}

// packagedMatch is the active Match block of the packaged sshd snippet,
// with keys read from keys instead of /etc/ssh/authorized_keys.
func packagedMatch(t *testing.T, keys string) string {
	t.Helper()
	s := readFile(t, "/usr/share/certnode/sshd_config.certpush")
	i := strings.Index(s, "\nMatch User certsync\n")
	if i < 0 {
		t.Fatal("the packaged sshd snippet has no active Match User certsync block")
	}
	s = s[i+1:]
	s = s[:strings.Index(s, "\n\n")+1]
	if !strings.Contains(s, "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n") {
		t.Fatalf("the Match block does not read keys from /etc/ssh/authorized_keys/%%u:\n%s", s)
	}
	return strings.ReplaceAll(s, "/etc/ssh/authorized_keys", keys)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// checkInitPaths: the packaged certpush init prints the packaged node
// paths, not make install's.
func checkInitPaths(t *testing.T) {
	t.Helper()
	out := initOutput(t, "/usr/bin/certpush")
	for _, want := range []string{
		`restrict,command="` + forcedCommand + `" ssh-ed25519 `,
		"NOPASSWD: /usr/bin/certnode ^--config /etc/certnode/certnode\\.yaml install",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("packaged certpush init does not print %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "/usr/local/") {
		t.Errorf("packaged certpush init names /usr/local:\n%s", out)
	}
}
