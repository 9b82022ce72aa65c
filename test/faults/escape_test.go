package faults

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/testfleet"
)

// TestForcedCommandCannotBeBypassed gives a push account what a careless
// setup gives it, a home it can write, and lets it try the escape: over
// the SFTP its forced command allows, it writes its own
// ~/.ssh/authorized_keys with a key of its choosing and logs in with that
// key. Through the shipped hooks/sshd_config.certpush (keys only from the
// root-owned file, inside the account's Match block) the login is refused.
// As a control, the same attempt succeeds when sshd also reads
// .ssh/authorized_keys, so the test can tell the two apart.
func TestForcedCommandCannotBeBypassed(t *testing.T) {
	requireRoot(t)
	testfleet.Require(t, "useradd", "userdel")
	w := newWorld(t, 1)
	h := w.fleet.Hosts[0]
	srv := srvDir(t)
	name := "cpesc" + strconv.Itoa(os.Getpid()%100000)
	home := filepath.Join(srv, "home")
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", home,
		"--shell", "/bin/sh", "--password", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(srv, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(srv, "certnode-forced-command")
	if out, err := exec.Command("cp", "../../hooks/certnode-forced-command", wrapper).CombinedOutput(); err != nil {
		t.Fatalf("copy wrapper: %v: %s", err, out)
	}
	pub := strings.TrimSpace(mustRead(t, w.fleet.Identity+".pub"))
	line := fmt.Sprintf("restrict,command=\"%s --no-sudo --sftp-server %s\" %s\n", wrapper, testfleet.SFTPServer, pub)
	if err := os.WriteFile(filepath.Join(keys, name), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}

	// The key the account gives itself.
	_, own, _ := ed25519.GenerateKey(rand.Reader)
	ownSigner, err := ssh.NewSignerFromKey(own)
	if err != nil {
		t.Fatal(err)
	}
	base := mustRead(t, h.SSHConfig)
	base = strings.Replace(base, "AllowUsers "+w.fleet.User, "AllowUsers "+w.fleet.User+" "+name, 1)
	shipped := shippedMatch(t, name, keys)

	for _, tc := range []struct {
		desc    string
		match   string
		escapes bool
	}{
		{"shipped sshd_config.certpush", shipped, false},
		{"control: .ssh/authorized_keys read as well", strings.Replace(shipped, "AuthorizedKeysFile "+keys+"/%u", "AuthorizedKeysFile "+keys+"/%u .ssh/authorized_keys", 1), true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			os.RemoveAll(filepath.Join(home, ".ssh"))
			restartSSH(t, h, base+"\n"+tc.match)
			cfg, err := w.fleet.ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			cfg.User = name
			c, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
			if err != nil {
				t.Fatalf("the push key does not log in: %v", err)
			}
			defer c.Close()
			if code, out := run(c, "id"); code == 0 || strings.Contains(out, "uid=") {
				t.Fatalf("the push key ran a command: %q", out)
			}
			sc, err := sftp.NewClient(c)
			if err != nil {
				t.Fatalf("sftp through the forced command: %v", err)
			}
			defer sc.Close()
			// The escape: a key of its own in its own home.
			dir := path.Join(home, ".ssh")
			if err := sc.MkdirAll(dir); err != nil {
				t.Fatalf("mkdir %s: %v", dir, err)
			}
			f, err := sc.Create(path.Join(dir, "authorized_keys"))
			if err != nil {
				t.Fatal(err)
			}
			f.Write(ssh.MarshalAuthorizedKey(ownSigner.PublicKey()))
			f.Close()

			cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(ownSigner)}
			c2, err := ssh.Dial("tcp", h.SSHAddr(), cfg)
			escaped := false
			if err == nil {
				defer c2.Close()
				code, out := run(c2, "id")
				escaped = code == 0 && strings.Contains(out, "uid=")
			}
			if escaped != tc.escapes {
				t.Errorf("escaped with its own key: %v (login error %v), want %v", escaped, err, tc.escapes)
			}
		})
	}
}

// shippedMatch returns the active Match block of hooks/sshd_config.certpush
// for account, its keys read from dir.
func shippedMatch(t *testing.T, account, dir string) string {
	t.Helper()
	s := mustRead(t, "../../hooks/sshd_config.certpush")
	i := strings.Index(s, "\nMatch User certsync\n")
	if i < 0 {
		t.Fatal("hooks/sshd_config.certpush has no active Match User certsync block")
	}
	s = s[i+1:]
	s = s[:strings.Index(s, "\n\n")+1]
	if !strings.Contains(s, "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n") {
		t.Fatalf("the Match block does not read keys from the root-owned file only:\n%s", s)
	}
	s = strings.ReplaceAll(s, "/etc/ssh/authorized_keys", dir)
	return strings.ReplaceAll(s, "User certsync", "User "+account)
}
