package testfleet

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/testlog"
)

var testDomains = []string{"example.test", "*.example.test"}

func startFleet(t *testing.T, hosts int) *Fleet {
	t.Helper()
	Require(t, SSHD, Nginx, SFTPServer, "true")
	// Any program stands in for certnode: the test runs it over SSH.
	certnode, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := bundle.NewSigner(key)
	f, err := Start(t.Context(), Options{
		Hosts:      hosts,
		CertName:   "example.test",
		Domains:    testDomains,
		Certnode:   certnode,
		Signer:     signer,
		TrustedKey: signer.PublicKey(),
		Dir:        t.TempDir(),
		Logger:     testlog.Logger(t),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f
}

// dial connects to h as the fleet user, checking the host key against the
// fleet's known_hosts file with the fleet's client key.
func dial(t *testing.T, f *Fleet, h *Host) (*ssh.Client, error) {
	t.Helper()
	cb, err := knownhosts.New(f.KnownHosts)
	if err != nil {
		t.Fatalf("knownhosts: %v", err)
	}
	pem, err := os.ReadFile(f.Identity)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("parse client key: %v", err)
	}
	return ssh.Dial("tcp", h.SSHAddr(), &ssh.ClientConfig{
		User:            f.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: cb,
		Timeout:         5 * time.Second,
	})
}

// run runs cmd on c and returns its combined output. A session that has
// not finished after 30 s is an error (and closes c): a server that
// holds the connection open without answering must fail the test, not
// hang it.
func run(c *ssh.Client, cmd string) (string, error) {
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := c.NewSession()
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer s.Close()
		out, err := s.CombinedOutput(cmd)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		return string(r.out), r.err
	case <-time.After(30 * time.Second):
		c.Close()
		return "", fmt.Errorf("%q: no answer in 30s", cmd)
	}
}

func TestFleet(t *testing.T) {
	f := startFleet(t, 2)
	ctx := t.Context()

	if fi, err := os.Stat(f.Identity); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity %s: %v, mode %v; want mode 0600", f.Identity, err, fi.Mode())
	}
	if fi, err := os.Stat(f.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("fleet dir: %v; want mode 0755", err)
	}

	for _, h := range f.Hosts {
		t.Run(h.Name, func(t *testing.T) {
			c, err := dial(t, f, h)
			if err != nil {
				t.Fatalf("dial %s: %v", h.SSHAddr(), err)
			}
			defer c.Close()

			out, err := run(c, "id -un && id -u")
			if err != nil {
				t.Fatalf("id: %v: %s", err, out)
			}
			if got, want := strings.Fields(out), []string{f.User, strconv.Itoa(f.UID)}; !slices.Equal(got, want) {
				t.Errorf("remote user = %q, want %q", got, want)
			}

			sc, err := sftp.NewClient(c)
			if err != nil {
				t.Fatalf("sftp: %v", err)
			}
			defer sc.Close()
			p := filepath.Join(h.Incoming, "probe")
			w, err := sc.Create(p)
			if err != nil {
				t.Fatalf("sftp create in incoming: %v", err)
			}
			if _, err := w.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			w.Close()
			r, err := sc.Open(p)
			if err != nil {
				t.Fatalf("sftp open: %v", err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if string(got) != "hello" {
				t.Errorf("read back %q, want %q", got, "hello")
			}

			fp, err := h.ServedFingerprint(ctx, "example.test")
			if err != nil {
				t.Fatalf("ServedFingerprint: %v", err)
			}
			if fp != h.BootstrapFingerprint {
				t.Errorf("served %s, want bootstrap %s", fp, h.BootstrapFingerprint)
			}
			if fp, err := h.ServedFingerprint(ctx, "www.example.test"); err != nil || fp != h.BootstrapFingerprint {
				t.Errorf("served for www.example.test %s, %v; want %s", fp, err, h.BootstrapFingerprint)
			}

			// The installed bootstrap bundle is a valid, signed bundle
			// behind a relative live symlink.
			live := filepath.Join(h.Root, "live", f.CertName)
			target, err := os.Readlink(live)
			if err != nil || filepath.IsAbs(target) {
				t.Fatalf("live link %s -> %q, %v; want a relative link", live, target, err)
			}
			b, err := bundle.Open(live)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := bundle.ParsePublicKey(f.Signer.PublicKey())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := b.Verify(nil, time.Now()); err != nil {
				t.Errorf("bootstrap bundle does not verify: %v", err)
			}
			if err := b.Manifest.VerifySignature([]ed25519.PublicKey{pub}); err != nil {
				t.Errorf("bootstrap signature: %v", err)
			}
			if b.Manifest.ID != h.BootstrapID || b.Manifest.Fingerprint != h.BootstrapFingerprint {
				t.Errorf("manifest id %s fingerprint %s, want %s %s", b.Manifest.ID, b.Manifest.Fingerprint, h.BootstrapID, h.BootstrapFingerprint)
			}

			// certnode's config test and reload work as the fleet user.
			cfg := readCertnodeConfig(t, h)
			if !slices.Equal(cfg.Defaults.Test, h.NginxTest) || !slices.Equal(cfg.Defaults.Verify, []string{h.TLSAddr()}) {
				t.Errorf("certnode.yaml defaults = %+v", cfg.Defaults)
			}
			if out, err := run(c, strings.Join(cfg.Defaults.Test, " ")); err != nil {
				t.Errorf("nginx -t over ssh: %v: %s", err, out)
			}
			if out, err := run(c, strings.Join(cfg.Defaults.Reload, " ")); err != nil {
				t.Errorf("nginx -s reload over ssh: %v: %s", err, out)
			}

			// A broken config fails the test but the old nginx keeps serving.
			if err := h.BreakNginxConfig(); err != nil {
				t.Fatal(err)
			}
			if out, err := run(c, strings.Join(cfg.Defaults.Test, " ")); err == nil {
				t.Errorf("nginx -t passed on a broken config: %s", out)
			}
			if fp, err := h.ServedFingerprint(ctx, ""); err != nil || fp != h.BootstrapFingerprint {
				t.Errorf("after BreakNginxConfig: served %s, %v", fp, err)
			}
			if err := h.FixNginxConfig(); err != nil {
				t.Fatal(err)
			}
			if out, err := run(c, strings.Join(cfg.Defaults.Test, " ")); err != nil {
				t.Errorf("nginx -t after FixNginxConfig: %v: %s", err, out)
			}

			// The webroot is served for ACME http-01.
			tok := filepath.Join(h.Webroot, ".well-known", "acme-challenge", "tok")
			if err := os.WriteFile(tok, []byte("key-authz"), 0o644); err != nil {
				t.Fatal(err)
			}
			if body := httpGet(t, "http://"+h.HTTPAddr()+"/.well-known/acme-challenge/tok"); body != "key-authz" {
				t.Errorf("challenge body %q, want %q", body, "key-authz")
			}

			// The fleet user runs the copied certnode with the host's config.
			if fi, err := os.Stat(f.Certnode); err != nil || fi.Mode().Perm() != 0o755 {
				t.Errorf("certnode copy %s: %v", f.Certnode, err)
			}
			if want := f.Certnode + " --config " + h.CertnodeConfig; h.Command != want {
				t.Errorf("Command = %q, want %q", h.Command, want)
			}
			if out, err := run(c, h.Command); err != nil {
				t.Errorf("run %q: %v: %s", h.Command, err, out)
			}

			if n, err := h.Logins(); err != nil || n < 1 {
				t.Errorf("Logins = %d, %v; want at least 1", n, err)
			}
		})
	}

	h := f.Hosts[0]

	t.Run("stop and start nginx", func(t *testing.T) {
		if err := h.StopNginx(); err != nil {
			t.Fatal(err)
		}
		if h.NginxPID() != 0 {
			t.Errorf("NginxPID = %d after StopNginx", h.NginxPID())
		}
		if _, err := h.ServedFingerprint(ctx, ""); err == nil {
			t.Fatal("TLS dial succeeded with nginx stopped")
		}
		if err := h.StartNginx(ctx); err != nil {
			t.Fatal(err)
		}
		if fp, err := h.ServedFingerprint(ctx, ""); err != nil || fp != h.BootstrapFingerprint {
			t.Errorf("after StartNginx: served %s, %v", fp, err)
		}
	})

	t.Run("stop and start sshd", func(t *testing.T) {
		c, err := dial(t, f, h)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := h.StopSSH(); err != nil {
			t.Fatal(err)
		}
		if _, err := run(c, "true"); err == nil {
			t.Error("a session opened on a connection to a stopped sshd")
		}
		if c, err := dial(t, f, h); err == nil {
			c.Close()
			t.Fatal("dial succeeded with sshd stopped")
		}
		if err := h.StartSSH(ctx); err != nil {
			t.Fatal(err)
		}
		c2, err := dial(t, f, h)
		if err != nil {
			t.Fatalf("dial after StartSSH: %v", err)
		}
		c2.Close()
	})

	t.Run("replace host key", func(t *testing.T) {
		old := h.HostKey
		if err := h.ReplaceHostKey(ctx); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(old.Marshal(), h.HostKey.Marshal()) {
			t.Fatal("host key unchanged")
		}
		c, err := dial(t, f, h)
		if err == nil {
			c.Close()
			t.Fatal("dial succeeded with a changed host key")
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) || len(ke.Want) == 0 {
			t.Fatalf("dial error = %v, want a knownhosts key mismatch", err)
		}
		// The other host is untouched.
		c, err = dial(t, f, f.Hosts[1])
		if err != nil {
			t.Fatalf("dial %s: %v", f.Hosts[1].Name, err)
		}
		c.Close()
	})

	t.Run("inventory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "certpush.yaml")
		err := f.WriteInventory(path, InventoryOptions{
			StateDir: "/var/lib/x",
			Cert:     map[string]any{"canary": []string{"node-1"}},
			Extra:    "acme:\n  email: ops@example.test\n",
		})
		if err != nil {
			t.Fatal(err)
		}
		var inv struct {
			StateDir string `yaml:"state_dir"`
			SSH      struct {
				User, Identity string
				KnownHosts     string `yaml:"known_hosts"`
				Parallel       int
				Timeout        string
			}
			Certs map[string]struct {
				Domains, Hosts, Canary []string
				Install                string
			}
			Hosts map[string]struct {
				Address, Incoming, Command string
				Port                       int
				Verify                     []string
			}
			ACME struct{ Email string } `yaml:"acme"`
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &inv); err != nil {
			t.Fatalf("parse inventory: %v\n%s", err, data)
		}
		cert := inv.Certs["example.test"]
		n1 := inv.Hosts["node-1"]
		switch {
		case inv.StateDir != "/var/lib/x", inv.SSH.User != f.User, inv.SSH.Identity != f.Identity,
			inv.SSH.KnownHosts != f.KnownHosts, inv.SSH.Parallel != 8, inv.SSH.Timeout != "60s":
			t.Errorf("inventory top level wrong:\n%s", data)
		case !slices.Equal(cert.Domains, testDomains), !slices.Equal(cert.Hosts, []string{"node-1", "node-2"}),
			cert.Install != "now", !slices.Equal(cert.Canary, []string{"node-1"}):
			t.Errorf("inventory cert wrong:\n%s", data)
		case n1.Address != "127.0.0.1", n1.Port != h.SSHPort, n1.Incoming != h.Incoming,
			!slices.Equal(n1.Verify, []string{h.TLSAddr()}), inv.ACME.Email != "ops@example.test":
			t.Errorf("inventory host wrong:\n%s", data)
		}
	})

	t.Run("close", func(t *testing.T) {
		var pids []int
		for _, h := range f.Hosts {
			pids = append(pids, h.SSHPID(), h.NginxPID())
		}
		if slices.Contains(pids, 0) {
			t.Fatalf("pids before Close: %v", pids)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("pid %d still there after Close (kill 0: %v)", pid, err)
			}
			// Each daemon leads its process group: nginx workers too are gone.
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d still there after Close (kill 0: %v)", pid, err)
			}
		}
		if _, err := os.Stat(f.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fleet dir still there: %v", err)
		}
	})
}

func TestStartErrors(t *testing.T) {
	testCases := []struct {
		desc string
		opts Options
	}{
		{desc: "no hosts", opts: Options{CertName: "a.test", Domains: []string{"a.test"}}},
		{desc: "bad name", opts: Options{Hosts: 1, CertName: "../x", Domains: []string{"a.test"}}},
		{desc: "no domains", opts: Options{Hosts: 1, CertName: "a.test"}},
		{desc: "missing certnode", opts: Options{Hosts: 1, CertName: "a.test", Domains: []string{"a.test"}, Certnode: "/nonexistent/certnode"}},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			tc.opts.Dir = t.TempDir()
			if f, err := Start(t.Context(), tc.opts); err == nil {
				f.Close()
				t.Fatal("Start succeeded")
			}
			if ents, _ := os.ReadDir(tc.opts.Dir); len(ents) != 0 {
				t.Errorf("Start left %d entries behind", len(ents))
			}
		})
	}
}

func readCertnodeConfig(t *testing.T, h *Host) certnodeConfig {
	t.Helper()
	data, err := os.ReadFile(h.CertnodeConfig)
	if err != nil {
		t.Fatal(err)
	}
	var c certnodeConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("parse %s: %v", h.CertnodeConfig, err)
	}
	if c.Root != h.Root || c.Incoming != h.Incoming || c.Keep != 3 ||
		!slices.Equal(c.TrustedKeys, []string{h.fleet.Signer.PublicKey()}) {
		t.Errorf("certnode.yaml: %+v", c)
	}
	if !slices.Equal(c.Certs[h.fleet.CertName].Domains, testDomains) {
		t.Errorf("certnode.yaml certs: %+v", c.Certs)
	}
	return c
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return string(body)
}

func TestNoNginx(t *testing.T) {
	Require(t, SSHD, SFTPServer, "true")
	f, err := Start(t.Context(), Options{
		Hosts:    2,
		CertName: "example.test",
		Domains:  testDomains,
		Dir:      t.TempDir(),
		NoNginx:  true,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, h := range f.Hosts {
		if pid := h.NginxPID(); pid != 0 {
			t.Errorf("%s: nginx runs (pid %d)", h.Name, pid)
		}
		c, err := dial(t, f, h)
		if err != nil {
			t.Fatalf("dial %s: %v", h.Name, err)
		}
		out, err := run(c, "id -un")
		c.Close()
		if err != nil || strings.TrimSpace(out) != f.User {
			t.Errorf("%s: id -un = %q, %v", h.Name, out, err)
		}
		data, err := os.ReadFile(h.CertnodeConfig)
		if err != nil {
			t.Fatal(err)
		}
		var cfg certnodeConfig
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		d := cfg.Defaults
		if len(d.Test) != 0 || !slices.Equal(d.Reload, []string{"true"}) || len(d.Verify) != 0 {
			t.Errorf("%s: certnode defaults = %+v, want no test, reload [true], no verify", h.Name, d)
		}
		if _, err := bundle.Open(filepath.Join(h.Root, "live", f.CertName)); err != nil {
			t.Errorf("%s: bootstrap bundle: %v", h.Name, err)
		}
	}
	inv := filepath.Join(t.TempDir(), "certpush.yaml")
	if err := f.WriteInventory(inv, InventoryOptions{StateDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "verify: []"); n != len(f.Hosts) {
		t.Errorf("inventory has %d empty verify lists, want %d:\n%s", n, len(f.Hosts), data)
	}
}
