package faults

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testnet"
)

// netns wraps a testnet.Netns for a test: failures end the test, and
// cleanup deletes the namespace.
type netns struct {
	t *testing.T
	*testnet.Netns
}

// requireNetns skips (fails under CI=true) without root or the tools.
func requireNetns(t *testing.T) {
	t.Helper()
	requireRoot(t)
	testfleet.Require(t, "ip", "nft")
}

// newNetns creates a namespace and its veth pair, both up.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireNetns(t)
	n, err := testnet.NewNetns()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("delete namespace: %v", err)
		}
	})
	return &netns{t: t, Netns: n}
}

func (n *netns) setLoss(pct int) {
	n.t.Helper()
	if err := n.SetLoss(pct); err != nil {
		n.t.Fatal(err)
	}
}

func (n *netns) counter(name string) int {
	n.t.Helper()
	v, err := n.Counter(name)
	if err != nil {
		n.t.Fatal(err)
	}
	return v
}

func (n *netns) partition(down bool) {
	n.t.Helper()
	if err := n.Partition(down); err != nil {
		n.t.Fatal(err)
	}
}

func (n *netns) relay(target string) *testnet.Proxy {
	n.t.Helper()
	p, err := n.Relay(target)
	if err != nil {
		n.t.Fatal(err)
	}
	return p
}

// viaNetns routes the push to h, its SSH connection and certpush's TLS
// check, through relays in n; patch may change the inventory further.
func (w *world) viaNetns(h *testfleet.Host, n *netns, patch func(inv map[string]any)) {
	w.t.Helper()
	sshRelay := n.relay(h.SSHAddr())
	tlsRelay := n.relay(h.TLSAddr())
	kh := w.knownHostsWith(nil, map[string]ssh.PublicKey{sshRelay.Addr: h.HostKey})
	_, port, _ := net.SplitHostPort(sshRelay.Addr)
	portN, _ := strconv.Atoi(port)
	w.writeInventory(testfleet.InventoryOptions{}, func(inv map[string]any) {
		invSSH(inv)["known_hosts"] = kh
		invHost(inv, h.Name)["address"] = n.NsAddr
		invHost(inv, h.Name)["port"] = portN
		invHost(inv, h.Name)["verify"] = []string{tlsRelay.Addr}
		if patch != nil {
			patch(inv)
		}
	})
}

// cutOff reports whether a host failed because it could not be reached:
// it ran out of time, or (once the neighbour's address could not be
// resolved) the kernel found no way to it.
func cutOff(r hostResult) bool {
	if r.Result != "failed" {
		return false
	}
	for _, s := range []string{"timeout", "deadline", "no route to host"} {
		if strings.Contains(r.Error, s) {
			return true
		}
	}
	return false
}

// TestNetnsLoss drops a quarter of node-1's packets, both ways, on the
// veth its push crosses. With a generous per-host timeout TCP's
// retransmits usually carry the push through; either way node-1 serves
// its old or its new certificate, nothing partial is installed, the
// other host is not held up, and once the path is clean a push converges.
func TestNetnsLoss(t *testing.T) {
	requireNetns(t)
	w := newWorld(t, 2)
	n1, n2 := w.fleet.Hosts[0], w.fleet.Hosts[1]
	n := newNetns(t)
	const timeout = 15 * time.Second
	w.viaNetns(n1, n, func(inv map[string]any) {
		invSSH(inv)["connect_timeout"] = "8s"
		invSSH(inv)["timeout"] = timeout.String()
	})

	old := w.importNew(devca.Leaf{})
	if code, res := w.push(); code != 0 || res[n1.Name].Result != "installed" {
		t.Fatalf("push across the clean veth: %d %+v", code, res)
	}
	if seen := n.counter("seen"); seen == 0 {
		t.Fatal("the push did not cross the veth")
	}

	n.setLoss(25)
	fp := w.importNew(devca.Leaf{})
	start := time.Now()
	_, res := w.push()
	took := time.Since(start)
	seen, dropped := n.counter("seen"), n.counter("dropped")
	t.Logf("lossy push took %s: %s %s %s; %d of %d packets dropped", took.Round(time.Millisecond), n1.Name, res[n1.Name].Result, res[n1.Name].Error, dropped, seen)
	if dropped == 0 {
		t.Errorf("no packet was dropped out of %d", seen)
	}
	if r := res[n1.Name]; r.Result != "installed" && r.Result != "failed" {
		t.Errorf("%s: %s %s, want installed or failed", n1.Name, r.Result, r.Error)
	}
	if r := res[n2.Name]; r.Result != "installed" {
		t.Errorf("%s: %s %s, want installed", n2.Name, r.Result, r.Error)
	}
	if took > timeout+5*time.Second {
		t.Errorf("push took %s with a %s per-host timeout", took, timeout)
	}
	waitIdle(t, n1)
	w.check(checkOptions{allowed: []string{old, fp}})

	n.setLoss(0)
	age(t, leftovers(n1))
	w.converge(fp)
}

// gate is a named pipe that a host's config test reads before it runs:
// the install stops there, mid-run, until the test releases it.
type gate struct {
	t    *testing.T
	path string
	once sync.Once
}

func (w *world) newGate(h *testfleet.Host) *gate {
	w.t.Helper()
	dir := filepath.Join(w.fleet.Dir, "faults")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		w.t.Fatal(err)
	}
	g := &gate{t: w.t, path: filepath.Join(dir, h.Name+".gate")}
	if err := syscall.Mkfifo(g.path, 0o600); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Chown(g.path, w.fleet.UID, w.fleet.GID); err != nil {
		w.t.Fatal(err)
	}
	script := w.writeScript(h.Name+"-gated-test.sh", fmt.Sprintf("read _ < %s\nexec %s\n", shellQuote([]string{g.path}), shellQuote(h.NginxTest)))
	w.writeNodeConfig(h, "", nodeDefaults{Test: []string{script}}, nil)
	w.t.Cleanup(g.release)
	return g
}

// reached waits until the config test is blocked on the gate and
// reports whether it got there within timeout.
func (g *gate) reached(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		// Opening for writing without blocking fails while nobody reads.
		f, err := os.OpenFile(g.path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			f.Close()
			return true
		}
		if !errors.Is(err, syscall.ENXIO) || time.Now().After(deadline) {
			g.t.Logf("gate: %v", err)
			return false
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// release lets the blocked config test (if any) go on.
func (g *gate) release() {
	g.once.Do(func() {
		// O_RDWR never blocks on a FIFO; a blocked reader gets the line.
		f, err := os.OpenFile(g.path, os.O_RDWR, 0)
		if err != nil {
			return
		}
		f.WriteString("go\n")
		f.Close()
	})
}

// TestNetnsPartition cuts node-2 off by taking its veth down, before a
// push and in the middle of one (while certnode runs on the node): node-2
// fails within its timeout, the other hosts install, node-2 serves its old
// or new certificate, and once the link is back a push converges.
func TestNetnsPartition(t *testing.T) {
	requireNetns(t)
	w := newWorld(t, 3)
	n2 := w.fleet.Hosts[1]
	n := newNetns(t)
	const connectTimeout, timeout = 2 * time.Second, 5 * time.Second
	w.viaNetns(n2, n, func(inv map[string]any) {
		invSSH(inv)["connect_timeout"] = connectTimeout.String()
		invSSH(inv)["timeout"] = timeout.String()
	})
	parent := t
	for _, tc := range []struct {
		desc string
		// cut starts the push and partitions the path at the point the
		// case is about; it returns the push's exit code and results.
		cut func(t *testing.T) (int, map[string]hostResult)
		// limit bounds how long the push may take.
		limit time.Duration
	}{
		{"before the push", func(t *testing.T) (int, map[string]hostResult) {
			n.partition(true)
			return w.push()
		}, connectTimeout + 5*time.Second},
		{"while certnode runs", func(t *testing.T) (int, map[string]hostResult) {
			g := w.newGate(n2)
			var code int
			var res map[string]hostResult
			done := make(chan struct{})
			go func() {
				defer close(done)
				code, res = w.push()
			}()
			if !g.reached(timeout) {
				<-done
				t.Fatalf("the install never reached the config test: %d %+v", code, res)
			}
			n.partition(true)
			<-done
			// The node finishes its install on its own; certpush has
			// given up on it already.
			g.release()
			return code, res
		}, timeout + 5*time.Second},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			w.t, n.t = t, t
			defer func() { w.t, n.t = parent, parent }()
			fp := w.importNew(devca.Leaf{})
			start := time.Now()
			code, res := tc.cut(t)
			took := time.Since(start)
			t.Logf("push took %s: %s %s %s", took.Round(time.Millisecond), n2.Name, res[n2.Name].Result, res[n2.Name].Error)
			if code != 1 {
				t.Errorf("push exited %d, want 1", code)
			}
			for _, h := range w.fleet.Hosts {
				r := res[h.Name]
				if h == n2 {
					if !cutOff(r) {
						t.Errorf("%s: %s %q, want it cut off", h.Name, r.Result, r.Error)
					}
					continue
				}
				if r.Result != "installed" {
					t.Errorf("%s: %s %s, want installed", h.Name, r.Result, r.Error)
				}
			}
			if took > tc.limit {
				t.Errorf("push took %s, want at most %s", took, tc.limit)
			}
			waitIdle(t, n2)
			w.check(checkOptions{allowed: []string{fp}, settled: true})

			n.partition(false)
			w.writeNodeConfig(n2, "", nodeDefaults{}, nil)
			w.converge(fp)
		})
	}
}
