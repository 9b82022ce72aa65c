package faults

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
)

// Tools the host certificate test runs: ssh-keygen makes the CAs and
// certificates, and the ssh client is the oracle.
const (
	sshKeygen = "/usr/bin/ssh-keygen"
	sshClient = "/usr/bin/ssh"
)

// TestHostCertificates: the first host's sshd presents a host certificate
// (HostCertificate, made with ssh-keygen -s CA -h); known_hosts has
// @cert-authority and @revoked lines for it and no plain key. certpush
// accepts the host exactly where ssh -o StrictHostKeyChecking=yes does,
// with the same known_hosts, and a refused host never sees a login.
func TestHostCertificates(t *testing.T) {
	testfleet.Require(t, sshKeygen, sshClient)
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	dir := t.TempDir()
	ca, otherCA := newCA(t, dir, "ca"), newCA(t, dir, "other-ca")
	hostPub := filepath.Join(dir, "host.pub")
	if err := os.WriteFile(hostPub, ssh.MarshalAuthorizedKey(n1.HostKey), 0o644); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(n1.SSHPort)
	caLine := func(pattern, caKey string) string { return "@cert-authority " + pattern + " " + pubLine(t, caKey) }
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(n1.HostKey)))
	const principal, validity = "127.0.0.1", "-5m:+1d"
	testCases := []struct {
		desc      string
		ca        string // signs the certificate
		principal string // -n
		validity  string // -V
		known     []string
		accept    bool
		why       string // in certpush's refusal
	}{
		{desc: "right CA", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("*", ca)}, accept: true},
		{desc: "CA for the host and port", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("[127.0.0.1]:"+port, ca)}, accept: true},
		{desc: "CA for the bare name", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("127.0.0.1", ca)}, accept: true},
		{desc: "hashed CA line", ca: ca, principal: principal, validity: validity,
			known: []string{caLine(knownhosts.HashHostname("[127.0.0.1]:"+port), ca)}, accept: true},
		{desc: "port negated, bare name listed", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("127.0.0.1,![127.0.0.1]:"+port, ca)}, accept: true},
		{desc: "no principals", ca: ca, principal: "", validity: validity,
			known: []string{caLine("*", ca)}, accept: true},
		{desc: "invalid certificate, plain key known", ca: otherCA, principal: principal, validity: validity,
			known: []string{caLine("*", ca), "[127.0.0.1]:" + port + " " + hostKey}, accept: true},
		{desc: "wrong CA", ca: otherCA, principal: principal, validity: validity,
			known: []string{caLine("*", ca)}, why: "certificate not valid for this host: wrong CA"},
		{desc: "CA for another port", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("[127.0.0.1]:1", ca)}, why: "no key or CA for this host"},
		{desc: "CA with the host negated", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("*,!127.0.0.1,![127.0.0.1]:"+port, ca)}, why: "no key or CA for this host"},
		{desc: "wrong principal", ca: ca, principal: "db.example.test,127.0.0.2", validity: validity,
			known: []string{caLine("*", ca)}, why: "certificate not valid for this host: wrong principal"},
		{desc: "wildcard principal", ca: ca, principal: "127.0.0.*", validity: validity,
			known: []string{caLine("*", ca)}, why: "certificate not valid for this host: wrong principal"},
		{desc: "expired", ca: ca, principal: principal, validity: "20200101:20200102",
			known: []string{caLine("*", ca)}, why: "certificate not valid for this host: expired"},
		{desc: "not yet valid", ca: ca, principal: principal, validity: "+1d:+2d",
			known: []string{caLine("*", ca)}, why: "certificate not valid for this host: not yet valid"},
		{desc: "revoked CA", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("*", ca), "@revoked * " + pubLine(t, ca)}, why: "certificate not valid for this host: revoked CA"},
		{desc: "revoked host key", ca: ca, principal: principal, validity: validity,
			known: []string{caLine("*", ca), "@revoked * " + hostKey}, why: "is revoked"},
	}
	w.importNew(devca.Leaf{})
	for i, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			w.t = t
			cert := signHostCert(t, tc.ca, hostPub, tc.principal, tc.validity)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := n1.SetHostCertificate(ctx, cert); err != nil {
				t.Fatal(err)
			}
			lines := append([]string{knownhosts.Line([]string{knownhosts.Normalize(n2.SSHAddr())}, n2.HostKey)}, tc.known...)
			kh := filepath.Join(dir, "known_hosts."+strconv.Itoa(i))
			if err := os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := sshAccepts(t, w, n1, kh); got != tc.accept {
				t.Fatalf("ssh -o StrictHostKeyChecking=yes accepts: %v, the test expects %v", got, tc.accept)
			}
			w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) { invSSH(inv)["known_hosts"] = kh })
			logins, err := n1.Logins()
			if err != nil {
				t.Fatal(err)
			}
			code, res := w.push()
			r := res[n1.Name]
			accepted := r.Result == "installed" || r.Result == "unchanged"
			if accepted != tc.accept {
				t.Fatalf("certpush accepts: %v (%s %q), ssh: %v", accepted, r.Result, r.Error, tc.accept)
			}
			if r := res[n2.Name]; r.Result != "installed" && r.Result != "unchanged" {
				t.Errorf("%s: %s %s", n2.Name, r.Result, r.Error)
			}
			if tc.accept {
				if code != 0 {
					t.Errorf("push exited %d", code)
				}
				return
			}
			if code != 1 || !strings.Contains(r.Error, tc.why) || strings.Contains(r.Error, "HOST KEY HAS CHANGED") {
				t.Errorf("push exited %d, %s: %q; want a refusal saying %q", code, n1.Name, r.Error, tc.why)
			}
			if after, _ := n1.Logins(); after != logins {
				t.Errorf("%s saw %d logins from a refused push", n1.Name, after-logins)
			}
			if l := leftovers(n1); len(l) > 0 {
				t.Errorf("something was uploaded: %v", l)
			}
		})
	}
	w.t = t
}

// TestHostKeysMalformedLine: a malformed known_hosts line for another host
// (bad base64, unknown marker, too few fields) is skipped with one
// warning naming FILE:LINE, and the push succeeds; it does not make an
// unknown host trusted.
func TestHostKeysMalformedLine(t *testing.T) {
	w := newWorld(t, 2)
	n1 := w.fleet.Hosts[0]
	good, err := os.ReadFile(w.fleet.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	broken := "db.example.test ssh-ed25519 AAAA%%%notbase64\n@cert-authorty *.example.test ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\nweb.example.test ssh-ed25519\n"
	kh := filepath.Join(w.dir, "known_hosts.malformed")
	if err := os.WriteFile(kh, append([]byte(broken), good...), 0o644); err != nil {
		t.Fatal(err)
	}
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) { invSSH(inv)["known_hosts"] = kh })
	fp := w.importNew(devca.Leaf{})
	code, stdout, stderr := w.certpush("push", "--json")
	if code != 0 {
		t.Fatalf("push exited %d: %s", code, stdout)
	}
	for _, n := range []int{1, 2, 3} {
		if got := strings.Count(stderr, kh+":"+strconv.Itoa(n)+" "); got != 1 {
			t.Errorf("%d warnings naming %s:%d, want 1", got, kh, n)
		}
	}
	w.check(checkOptions{allowed: []string{fp}, settled: true})

	// The same lines and nothing for n1: it stays unknown.
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(good)), "\n") {
		if !strings.HasPrefix(l, knownhosts.Normalize(n1.SSHAddr())+" ") {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(kh, []byte(broken+strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w.importNew(devca.Leaf{})
	code, res := w.push()
	if r := res[n1.Name]; code != 1 || r.Result != "failed" || !strings.Contains(r.Error, "no key or CA for this host") {
		t.Errorf("push exited %d, %s: %s %q; want an unknown host", code, n1.Name, r.Result, r.Error)
	}
	if r := res[w.fleet.Hosts[1].Name]; r.Result != "installed" {
		t.Errorf("%s: %s %s", w.fleet.Hosts[1].Name, r.Result, r.Error)
	}
}

// newCA makes an Ed25519 CA key pair with ssh-keygen and returns the
// private key's path.
func newCA(t *testing.T, dir, name string) string {
	t.Helper()
	key := filepath.Join(dir, name)
	runTool(t, sshKeygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key)
	return key
}

// pubLine is the "type base64" of the public half of a key made by newCA.
func pubLine(t *testing.T, key string) string {
	t.Helper()
	data, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	return f[0] + " " + f[1]
}

// signHostCert signs hostPub with ca as a host certificate for principals
// (comma-separated; "" for none, which names every host) and returns the
// certificate file's contents.
func signHostCert(t *testing.T, ca, hostPub, principals, validity string) []byte {
	t.Helper()
	argv := []string{sshKeygen, "-q", "-s", ca, "-h", "-I", "certpush-test-host", "-V", validity}
	if principals != "" {
		argv = append(argv, "-n", principals)
	}
	runTool(t, append(argv, hostPub)...)
	certPath := strings.TrimSuffix(hostPub, ".pub") + "-cert.pub"
	data, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(certPath)
	return data
}

func runTool(t *testing.T, argv ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

// sshAccepts runs the OpenSSH client against h with known_hosts kh and
// strict host key checking, and reports whether it got past the host key
// check.
func sshAccepts(t *testing.T, w *world, h *testfleet.Host, kh string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshClient, "-F", "/dev/null",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
		"-i", w.fleet.Identity, "-p", strconv.Itoa(h.SSHPort), "-l", w.fleet.User, "127.0.0.1", "true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	err := cmd.Run()
	t.Logf("ssh: %v: %s", err, stderr.String())
	if strings.Contains(stderr.String(), "Host key verification failed") {
		return false
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 255 {
		t.Fatalf("ssh failed for another reason: %s", stderr.String())
	}
	return true
}
