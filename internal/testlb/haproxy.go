// Package testlb starts a real HAProxy (Debian's /usr/sbin/haproxy)
// for tests: its own config, a TLS frontend on a loopback port serving
// one combined PEM file, and the admin socket of its runtime API in a
// private temporary directory; and, to compare with, a real nginx
// serving the same way and reloaded. Both are stopped by pid (testproc).
package testlb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/testproc"
)

// Binary is the HAProxy the tests start.
const Binary = "/usr/sbin/haproxy"

// HAProxy is one running HAProxy.
type HAProxy struct {
	Dir    string // config, log, crt file and admin socket
	Config string
	Socket string // admin socket (stats socket ... level admin)
	Crt    string // the combined PEM the TLS frontend loads
	Port   int
	Log    string
	proc   *testproc.Proc
}

// Addr is the TLS frontend's address.
func (h *HAProxy) Addr() string { return fmt.Sprintf("127.0.0.1:%d", h.Port) }

// Require skips the test when HAProxy is not installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("%s not installed (scripts/deps.sh installs it): %v", Binary, err)
	}
}

// Start starts HAProxy serving pem (fullchain then key) from its crt
// file, and waits until its runtime API answers and its frontend
// accepts connections. The caller stops it with Stop (Start registers
// that with t).
func Start(t testing.TB, pem []byte) *HAProxy {
	t.Helper()
	Require(t)
	// A unix socket path is at most 107 bytes: a short directory of its
	// own rather than the test's.
	dir, err := os.MkdirTemp("", "haproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &HAProxy{
		Dir:    dir,
		Config: filepath.Join(dir, "haproxy.cfg"),
		Socket: filepath.Join(dir, "admin.sock"),
		Crt:    filepath.Join(dir, "site.pem"),
		Log:    filepath.Join(dir, "haproxy.log"),
	}
	if err := os.WriteFile(h.Crt, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; ; attempt++ {
		h.Port = testproc.MustFreePort(t)
		err = h.start()
		if err == nil || attempt == 2 {
			break
		}
	}
	if err != nil {
		t.Fatalf("start haproxy: %v\n%s", err, testproc.Tail(h.Log, 20))
	}
	t.Cleanup(func() { h.Stop() })
	return h
}

func (h *HAProxy) start() error {
	conf := fmt.Sprintf(`global
	stats socket %s level admin
	maxconn 4096
	tune.ssl.default-dh-param 2048

defaults
	mode http
	timeout connect 5s
	timeout client 10s
	timeout server 10s

frontend tls
	bind 127.0.0.1:%d ssl crt %s
	http-request return status 200 content-type text/plain string ok
`, h.Socket, h.Port, h.Crt)
	if err := os.WriteFile(h.Config, []byte(conf), 0o644); err != nil {
		return err
	}
	os.Remove(h.Socket)
	p, err := testproc.Start("haproxy", []string{Binary, "-db", "-f", h.Config}, h.Log, testproc.Options{Tree: true})
	if err != nil {
		return err
	}
	h.proc = p
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("haproxy exited: %v", p.Err())
		}
		if out, err := h.Command("show info\n"); err == nil && strings.Contains(out, "Pid:") {
			if c, err := net.DialTimeout("tcp", h.Addr(), time.Second); err == nil {
				c.Close()
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Stop()
	return errors.New("haproxy did not come up within 10s")
}

// Command sends one runtime API command and returns the answer.
func (h *HAProxy) Command(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", h.Socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	return string(out), err
}

// Pid is HAProxy's pid: it must not change across a hot swap.
func (h *HAProxy) Pid() int { return h.proc.Pid() }

// Exited reports whether HAProxy has exited.
func (h *HAProxy) Exited() bool { return h.proc.Exited() }

// Stop stops HAProxy (by pid: SIGTERM, then SIGKILL).
func (h *HAProxy) Stop() error {
	if h.proc == nil {
		return nil
	}
	return h.proc.Stop()
}
