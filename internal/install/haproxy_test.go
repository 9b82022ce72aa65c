package install

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testlb"
)

// placeholderPEM is a combined PEM (certificate and key) that HAProxy
// starts with, from a CA of its own.
func placeholderPEM(t *testing.T) []byte {
	t.Helper()
	ca, err := devca.New("placeholder")
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(devca.Leaf{Domains: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte(nil), is.Cert...), is.Key...)
}

// servedFP is the SHA-256 fingerprint served at addr.
func servedFP(t *testing.T, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "example.com", InsecureSkipVerify: true}) //nolint:gosec // fingerprint compare
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer c.Close()
	s := sha256.Sum256(c.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(s[:])
}

// swapFigures records one measured swap for docs/load-balancers.md (and
// LB_BENCH_OUT, when set, for bench/lb.sh).
func swapFigures(t *testing.T, what string, st testlb.Stats, elapsed time.Duration) {
	t.Helper()
	line := fmt.Sprintf("%s: %d handshakes, %d failed, slowest %s, new certificate served %s after the install started (install took %s)",
		what, st.Handshakes, st.Failed, st.Slowest.Round(time.Millisecond), st.UntilNew.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	t.Log(line)
	if out := os.Getenv("LB_BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}

// loadWorkers is how many goroutines handshake at once during a swap.
const loadWorkers = 4

// A certificate with haproxy: goes into the running HAProxy through its
// runtime API: no reload, no restart, not one failed handshake under
// continuous load, and a failed check rolls back through the same API.
func TestHAProxyHotSwap(t *testing.T) {
	hp := testlb.Start(t, placeholderPEM(t))
	n := newNode(t, nodeOptions{noVerify: true})
	c := n.cfg.Certs["example.com"]
	c.HAProxy = &HAProxy{Socket: hp.Socket, Crt: hp.Crt}
	c.Reload = nil
	c.Verify = []string{hp.Addr()}
	c.VerifyTimeout = 5 * time.Second
	pid := hp.Pid()

	b1 := n.bundle("example.com", bundleOptions{})
	n.installOne("example.com", Options{}, Installed)
	if got := servedFP(t, hp.Addr()); got != b1.m.Fingerprint {
		t.Fatalf("haproxy serves %.16s, want %.16s", got, b1.m.Fingerprint)
	}
	fi, err := os.Stat(hp.Crt)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("crt file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	crt, _ := os.ReadFile(hp.Crt)
	if !bytes.Contains(crt, []byte("PRIVATE KEY")) || !bytes.Contains(crt, []byte("CERTIFICATE")) || bytes.Contains(crt, []byte("\n\n")) {
		t.Errorf("crt file is not fullchain + key without blank lines:\n%s", crt)
	}

	// Under load.
	load := testlb.StartLoad(hp.Addr(), "example.com", loadWorkers)
	time.Sleep(300 * time.Millisecond)
	b2 := n.bundle("example.com", bundleOptions{})
	start := time.Now()
	n.installOne("example.com", Options{}, Installed)
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	st := testlb.Summarize(load.Stop(), b2.m.Fingerprint, start)
	swapFigures(t, "haproxy runtime API", st, elapsed)
	if st.Failed != 0 {
		t.Errorf("%d of %d handshakes failed during the swap; first: %v", st.Failed, st.Handshakes, st.FirstErr)
	}
	if st.Handshakes < 20 || st.UntilNew < 0 {
		t.Errorf("load: %d handshakes, new certificate after %v; want it served", st.Handshakes, st.UntilNew)
	}
	if hp.Pid() != pid || hp.Exited() {
		t.Errorf("haproxy pid %d -> %d (exited %v): it must keep running", pid, hp.Pid(), hp.Exited())
	}
	if got := servedFP(t, hp.Addr()); got != b2.m.Fingerprint {
		t.Errorf("after the swap haproxy serves %.16s, want %.16s", got, b2.m.Fingerprint)
	}
	if lines := n.lines("reload.log"); len(lines) != 0 {
		t.Errorf("reload ran: %v", lines)
	}

	// A check that fails after the swap (a second endpoint that keeps
	// serving b2) rolls back through the API.
	pinned := startTLS(t, filepath.Join(n.root, "live"))
	pinned.pinTo(t, b2)
	c.Verify = []string{hp.Addr(), pinned.addr}
	c.VerifyTimeout = time.Second
	n.bundle("example.com", bundleOptions{})
	res := n.installOne("example.com", Options{}, RolledBack)
	if !strings.Contains(res.Err.Error(), pinned.addr) {
		t.Errorf("rollback error %q does not name %s", res.Err, pinned.addr)
	}
	if got := servedFP(t, hp.Addr()); got != b2.m.Fingerprint {
		t.Errorf("after the rollback haproxy serves %.16s, want %.16s", got, b2.m.Fingerprint)
	}
	if crt2, _ := os.ReadFile(hp.Crt); !bytes.Equal(crt2, combinedPEM(b2.mat.Fullchain(), b2.mat.KeyPEM)) {
		t.Errorf("crt file is not b2's after the rollback")
	}
	if out, _ := hp.Command("show ssl cert\n"); strings.Contains(out, "*"+hp.Crt) {
		t.Errorf("a transaction is left open:\n%s", out)
	}

	// The runtime API unreachable: reload is the fallback.
	c.Verify = []string{hp.Addr()}
	c.HAProxy = &HAProxy{Socket: filepath.Join(hp.Dir, "missing.sock"), Crt: hp.Crt}
	c.Reload = n.cfg.Defaults.Reload
	n.bundle("example.com", bundleOptions{})
	res = n.installOne("example.com", Options{}, RolledBack)
	if lines := n.lines("reload.log"); len(lines) != 2 {
		t.Errorf("reload ran %d times (%v), want 2: install and rollback", len(lines), lines)
	}
	if !strings.Contains(res.Err.Error(), "serves") {
		t.Errorf("error %q: want the TLS check's", res.Err)
	}
}

// The same load against nginx reloaded by certnode, for comparison.
func TestNginxReloadUnderLoad(t *testing.T) {
	n := newNode(t, nodeOptions{noVerify: true})
	n.bundle("example.com", bundleOptions{})
	n.installOne("example.com", Options{}, Installed)
	ng := testlb.StartNginx(t, filepath.Join(n.root, "live", "example.com"))
	c := n.cfg.Certs["example.com"]
	c.Reload = ng.ReloadArgv()
	c.Test = nil
	c.Verify = []string{ng.Addr()}
	c.VerifyTimeout = 10 * time.Second

	load := testlb.StartLoad(ng.Addr(), "example.com", loadWorkers)
	time.Sleep(300 * time.Millisecond)
	b2 := n.bundle("example.com", bundleOptions{})
	start := time.Now()
	n.installOne("example.com", Options{}, Installed)
	elapsed := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	st := testlb.Summarize(load.Stop(), b2.m.Fingerprint, start)
	swapFigures(t, "nginx reload", st, elapsed)
	if st.UntilNew < 0 {
		t.Errorf("nginx never served the new certificate steadily")
	}
	if got := servedFP(t, ng.Addr()); got != b2.m.Fingerprint {
		t.Errorf("nginx serves %.16s, want %.16s", got, b2.m.Fingerprint)
	}
}

func TestParseHAProxySetting(t *testing.T) {
	const head = "root: /etc/certnode\nincoming: /certsync/live\nallow_unsigned: true\n"
	cfg, err := ParseConfig("/etc/certnode/certnode.yaml", []byte(head+`certs:
  example.com:
    haproxy: {socket: /run/haproxy/admin.sock, crt: certs/example.com.pem}
    reload: [systemctl, reload, haproxy]
`))
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.Certs["example.com"].HAProxy
	if h == nil || h.Socket != "/run/haproxy/admin.sock" || h.Crt != "/etc/certnode/certs/example.com.pem" {
		t.Errorf("haproxy = %+v", h)
	}
	_, err = ParseConfig("c.yaml", []byte(head+`certs:
  a.com: {haproxy: {socket: /run/x.sock}}
  b.com: {haproxy: /run/x.sock}
  c.com: {haproxy: {socket: /s, crt: /c, port: 1}}
`))
	got := fmt.Sprint(err)
	for _, want := range []string{"c.yaml:5: certs.a.com.haproxy: socket and crt are both required", "c.yaml:6: certs.b.com.haproxy: want a mapping", "c.yaml:7: unknown key"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors lack %q:\n%s", want, got)
		}
	}
}
