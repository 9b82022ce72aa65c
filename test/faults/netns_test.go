package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
)

// netnsPrefix starts the name of every namespace these tests create;
// the test process's pid follows, so that a later run can tell whose
// namespace it is.
const netnsPrefix = "certpush-faults-"

// lossTable is the nftables table that counts and drops packets inside
// a namespace.
const lossTable = "certpush_faults"

// netnsSeq numbers the namespaces of this process.
var netnsSeq atomic.Int32

// netns is a network namespace joined to the root namespace by a veth
// pair whose /30 of 169.254.0.0/16 is used only by that pair: the root
// side has hostAddr, the namespace's side nsAddr, and nothing routes
// anywhere else. A relay listening on nsAddr inside the namespace
// forwards to a host's loopback port, so a connection to the relay
// crosses the veth, where the namespace's nftables rules drop packets
// and where taking the namespace's side down cuts the path.
type netns struct {
	t                *testing.T
	name             string
	hostIf, nsIf     string
	hostAddr, nsAddr string
	relays           []*Proxy
}

// requireNetns skips (fails under CI=true) without root or the tools.
func requireNetns(t *testing.T) {
	t.Helper()
	requireRoot(t)
	testfleet.Require(t, "ip", "nft")
}

// ipCmd runs a command (ip or nft) with a bounded time and returns its
// combined output.
func ipCmd(stdin string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// vethNames are the two ends of the pair of namespace seq of process pid.
func vethNames(pid, seq int) (host, ns string) {
	return fmt.Sprintf("cpf%dh%d", pid, seq), fmt.Sprintf("cpf%dn%d", pid, seq)
}

// sweepNetns deletes what earlier test processes that no longer run
// left behind (a killed run skips its cleanup).
func sweepNetns() {
	out, err := ipCmd("", "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, netnsPrefix)
		if !ok {
			continue
		}
		pidS, seqS, _ := strings.Cut(rest, "-")
		pid, err1 := strconv.Atoi(pidS)
		seq, err2 := strconv.Atoi(seqS)
		if err1 != nil || err2 != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		host, _ := vethNames(pid, seq)
		ipCmd("", "ip", "link", "del", host)
		ipCmd("", "ip", "netns", "del", name)
	}
}

// freeSubnet picks a /30 of 169.254.64.0/18 that no address or route of
// the root namespace uses, starting from one derived from the pid so
// that concurrent test processes start apart.
func freeSubnet(t *testing.T, seq int) (host, ns string) {
	t.Helper()
	addrs, err := ipCmd("", "ip", "-4", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := ipCmd("", "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		t.Fatal(err)
	}
	start := (os.Getpid()*7 + seq) % (1 << 12)
	for i := range 64 {
		k := (start + i) % (1 << 12)
		net3 := fmt.Sprintf("169.254.%d.", 64+k/64)
		base := (k % 64) * 4
		used := false
		for a := base; a < base+4; a++ {
			s := net3 + strconv.Itoa(a)
			if strings.Contains(addrs, s+"/") || strings.Contains(routes, s+"/") || strings.Contains(routes, s+" ") {
				used = true
			}
		}
		if !used {
			return net3 + strconv.Itoa(base+1), net3 + strconv.Itoa(base+2)
		}
	}
	t.Fatal("no free /30 in 169.254.64.0/18")
	return "", ""
}

// newNetns creates a namespace and its veth pair, both up; cleanup
// deletes them.
func newNetns(t *testing.T) *netns {
	t.Helper()
	requireNetns(t)
	sweepNetns()
	seq := int(netnsSeq.Add(1))
	n := &netns{t: t, name: fmt.Sprintf("%s%d-%d", netnsPrefix, os.Getpid(), seq)}
	n.hostIf, n.nsIf = vethNames(os.Getpid(), seq)
	n.hostAddr, n.nsAddr = freeSubnet(t, seq)
	if _, err := ipCmd("", "ip", "netns", "add", n.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deleting the root side takes the namespace's side with it at
		// once; the namespace itself is freed by the kernel later.
		if _, err := ipCmd("", "ip", "link", "del", n.hostIf); err != nil {
			t.Errorf("delete veth: %v", err)
		}
		if _, err := ipCmd("", "ip", "netns", "del", n.name); err != nil {
			t.Errorf("delete namespace: %v", err)
		}
	})
	for _, argv := range [][]string{
		{"ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name},
		{"ip", "addr", "add", n.hostAddr + "/30", "dev", n.hostIf},
		{"ip", "-n", n.name, "addr", "add", n.nsAddr + "/30", "dev", n.nsIf},
		{"ip", "link", "set", n.hostIf, "up"},
		{"ip", "-n", n.name, "link", "set", n.nsIf, "up"},
	} {
		if _, err := ipCmd("", argv...); err != nil {
			t.Fatal(err)
		}
	}
	n.routedLocally()
	n.setLoss(0)
	return n
}

// routedLocally fails the test unless the root namespace sends traffic
// for nsAddr into the veth pair and nowhere else, link up or down.
func (n *netns) routedLocally() {
	n.t.Helper()
	out, err := ipCmd("", "ip", "-4", "route", "get", n.nsAddr)
	if err != nil {
		n.t.Fatal(err)
	}
	if !strings.Contains(out, " dev "+n.hostIf+" ") {
		n.t.Fatalf("%s is not routed into %s: %s", n.nsAddr, n.hostIf, out)
	}
}

// setLoss replaces the namespace's rules: every packet on its veth side
// is counted in counter "seen", and pct percent of them, at random, in
// either direction, are counted in "dropped" and dropped.
func (n *netns) setLoss(pct int) {
	n.t.Helper()
	drop := ""
	if pct > 0 {
		drop = fmt.Sprintf(`
    iifname %[1]q numgen random mod 100 < %[2]d counter name "dropped" drop`, n.nsIf, pct)
	}
	dropOut := strings.ReplaceAll(drop, "iifname", "oifname")
	rules := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
  counter seen {}
  counter dropped {}
  chain in {
    type filter hook input priority 0; policy accept;
    iifname %[2]q counter name "seen"%[3]s
  }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname %[2]q counter name "seen"%[4]s
  }
}
`, lossTable, n.nsIf, drop, dropOut)
	if _, err := ipCmd(rules, "ip", "netns", "exec", n.name, "nft", "-f", "-"); err != nil {
		n.t.Fatal(err)
	}
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

// counter reads one of the namespace's packet counters.
func (n *netns) counter(name string) int {
	n.t.Helper()
	out, err := ipCmd("", "ip", "netns", "exec", n.name, "nft", "list", "counter", "inet", lossTable, name)
	if err != nil {
		n.t.Fatal(err)
	}
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		n.t.Fatalf("no packet count in %q", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// partition takes the namespace's side of the veth down (or back up).
// The root side stays up, so its route keeps sending nsAddr's packets
// into the pair, where they are lost. Back up, it waits until every
// relay can be reached again.
func (n *netns) partition(down bool) {
	n.t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	if _, err := ipCmd("", "ip", "-n", n.name, "link", "set", n.nsIf, state); err != nil {
		n.t.Fatal(err)
	}
	n.routedLocally()
	if down {
		return
	}
	// A neighbour entry that failed while the link was down would refuse
	// connections for a while: forget it.
	if _, err := ipCmd("", "ip", "neigh", "flush", "dev", n.hostIf); err != nil {
		n.t.Fatal(err)
	}
	for _, p := range n.relays {
		n.reachable(p)
	}
}

// reachable waits until a connection from the root namespace reaches p
// across the veth.
func (n *netns) reachable(p *Proxy) {
	n.t.Helper()
	poll(n.t, 10*time.Second, "the relay at "+p.Addr, func() bool {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// listen listens on nsAddr (port 0) inside the namespace. The socket
// is made by a goroutine whose thread joins the namespace and then goes
// back to its own. The thread must not end there: children started from
// it with a parent-death signal (the fleet's daemons) would be killed.
func (n *netns) listen() (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer own.Close()
		f, err := os.Open(filepath.Join("/var/run/netns", n.name))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("join namespace: %w", err)}
			return
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(n.nsAddr, "0"))
		if rerr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// Stuck in the namespace: keep the thread locked so that it
			// ends with this goroutine and nothing else runs there.
			if ln != nil {
				ln.Close()
			}
			ch <- result{err: fmt.Errorf("leave namespace: %w", rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// relay starts a Proxy inside the namespace forwarding to target (a
// loopback address of the root namespace) and waits until a connection
// from the root namespace reaches it across the veth.
func (n *netns) relay(target string) *Proxy {
	n.t.Helper()
	ln, err := n.listen()
	if err != nil {
		n.t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	n.t.Cleanup(func() { p.Close() })
	n.relays = append(n.relays, p)
	n.reachable(p)
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
		invHost(inv, h.Name)["address"] = n.nsAddr
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
