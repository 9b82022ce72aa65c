package testnet

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
	"time"

	"golang.org/x/sys/unix"
)

// NetnsPrefix starts the name of every namespace this package creates;
// the creating process's pid and a sequence number follow, so that a
// later run can tell whose namespace it is.
const NetnsPrefix = "certpush-net-"

// lossTable is the nftables table that counts and drops packets inside
// a namespace.
const lossTable = "certpush_net"

// netnsSeq numbers the namespaces of this process.
var netnsSeq atomic.Int32

// Netns is a network namespace joined to the root namespace by a veth
// pair whose /30 of 169.254.64.0/18 is used only by that pair: the root
// side has HostAddr, the namespace's side NsAddr, and nothing routes
// anywhere else. A relay listening on NsAddr inside the namespace
// forwards to a loopback port of the root namespace, so a connection to
// the relay crosses the veth, where the namespace's nftables rules drop
// packets and where taking the namespace's side down cuts the path.
type Netns struct {
	Name             string
	HostIf, NsIf     string
	HostAddr, NsAddr string

	mu     sync.Mutex
	relays []*Proxy
}

// Available reports why namespaces cannot be made here ("" if they can).
func Available() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not installed"
		}
	}
	return ""
}

// run runs a command (ip or nft) with a bounded time and returns its
// combined output.
func run(stdin string, argv ...string) (string, error) {
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
	return fmt.Sprintf("cpn%dh%d", pid, seq), fmt.Sprintf("cpn%dn%d", pid, seq)
}

// sweep deletes what earlier processes that no longer run left behind
// (a killed run skips its cleanup).
func sweep() {
	out, err := run("", "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, NetnsPrefix)
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
		run("", "ip", "link", "del", host)
		run("", "ip", "netns", "del", name)
	}
}

// freeSubnet picks a /30 of 169.254.64.0/18 that no address or route of
// the root namespace uses, starting from one derived from the pid so
// that concurrent processes start apart.
func freeSubnet(seq int) (host, ns string, err error) {
	addrs, err := run("", "ip", "-4", "-o", "addr", "show")
	if err != nil {
		return "", "", err
	}
	routes, err := run("", "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return "", "", err
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
			return net3 + strconv.Itoa(base+1), net3 + strconv.Itoa(base+2), nil
		}
	}
	return "", "", errors.New("no free /30 in 169.254.64.0/18")
}

// NewNetns creates a namespace and its veth pair, both up, with no
// packet loss. Close deletes them.
func NewNetns() (n *Netns, err error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	sweep()
	seq := int(netnsSeq.Add(1))
	n = &Netns{Name: fmt.Sprintf("%s%d-%d", NetnsPrefix, os.Getpid(), seq)}
	n.HostIf, n.NsIf = vethNames(os.Getpid(), seq)
	if n.HostAddr, n.NsAddr, err = freeSubnet(seq); err != nil {
		return nil, err
	}
	if _, err := run("", "ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Close()
			n = nil
		}
	}()
	for _, argv := range [][]string{
		{"ip", "link", "add", n.HostIf, "type", "veth", "peer", "name", n.NsIf, "netns", n.Name},
		{"ip", "addr", "add", n.HostAddr + "/30", "dev", n.HostIf},
		{"ip", "-n", n.Name, "addr", "add", n.NsAddr + "/30", "dev", n.NsIf},
		{"ip", "link", "set", n.HostIf, "up"},
		{"ip", "-n", n.Name, "link", "set", n.NsIf, "up"},
	} {
		if _, err := run("", argv...); err != nil {
			return nil, err
		}
	}
	if err := n.routedLocally(); err != nil {
		return nil, err
	}
	if err := n.SetLoss(0); err != nil {
		return nil, err
	}
	return n, nil
}

// Close stops the relays and deletes the veth pair and the namespace.
func (n *Netns) Close() error {
	n.mu.Lock()
	relays := n.relays
	n.relays = nil
	n.mu.Unlock()
	for _, p := range relays {
		p.Close()
	}
	// Deleting the root side takes the namespace's side with it at once
	// (an error here means the pair was never made); the namespace itself
	// is freed by the kernel later.
	run("", "ip", "link", "del", n.HostIf)
	_, err := run("", "ip", "netns", "del", n.Name)
	return err
}

// routedLocally fails unless the root namespace sends traffic for
// NsAddr into the veth pair and nowhere else, link up or down.
func (n *Netns) routedLocally() error {
	out, err := run("", "ip", "-4", "route", "get", n.NsAddr)
	if err != nil {
		return err
	}
	if !strings.Contains(out, " dev "+n.HostIf+" ") {
		return fmt.Errorf("%s is not routed into %s: %s", n.NsAddr, n.HostIf, out)
	}
	return nil
}

// SetLoss replaces the namespace's rules: every packet on its veth side
// is counted in counter "seen", and pct percent of them, at random, in
// either direction, are counted in "dropped" and dropped.
func (n *Netns) SetLoss(pct int) error {
	if pct < 0 || pct > 100 {
		return fmt.Errorf("packet loss %d%%: want 0 to 100", pct)
	}
	drop := ""
	switch {
	case pct == 100:
		drop = fmt.Sprintf(`
    iifname %q counter name "dropped" drop`, n.NsIf)
	case pct > 0:
		drop = fmt.Sprintf(`
    iifname %[1]q numgen random mod 100 < %[2]d counter name "dropped" drop`, n.NsIf, pct)
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
`, lossTable, n.NsIf, drop, dropOut)
	_, err := run(rules, "ip", "netns", "exec", n.Name, "nft", "-f", "-")
	return err
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

// Counter reads one of the namespace's packet counters, "seen" or
// "dropped".
func (n *Netns) Counter(name string) (int, error) {
	out, err := run("", "ip", "netns", "exec", n.Name, "nft", "list", "counter", "inet", lossTable, name)
	if err != nil {
		return 0, err
	}
	m := packetsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no packet count in %q", out)
	}
	return strconv.Atoi(m[1])
}

// Partition takes the namespace's side of the veth down (or back up).
// The root side stays up, so its route keeps sending NsAddr's packets
// into the pair, where they are lost: a connection attempt times out or
// finds no route, like a host cut off by the network. Back up, it waits
// (up to 10 s) until every relay can be reached again.
func (n *Netns) Partition(down bool) error {
	state := "up"
	if down {
		state = "down"
	}
	if _, err := run("", "ip", "-n", n.Name, "link", "set", n.NsIf, state); err != nil {
		return err
	}
	if err := n.routedLocally(); err != nil {
		return err
	}
	if down {
		return nil
	}
	// A neighbour entry that failed while the link was down would refuse
	// connections for a while: forget it.
	if _, err := run("", "ip", "neigh", "flush", "dev", n.HostIf); err != nil {
		return err
	}
	n.mu.Lock()
	relays := append([]*Proxy(nil), n.relays...)
	n.mu.Unlock()
	for _, p := range relays {
		if err := reachable(p.Addr, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// reachable waits until a connection from the root namespace reaches
// addr.
func reachable(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the relay at %s cannot be reached after %s: %w", addr, timeout, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// listen listens on NsAddr (port 0) inside the namespace. The socket is
// made by a goroutine whose thread joins the namespace and then goes
// back to its own. The thread must not end there: children started from
// it with a parent-death signal (a fleet's daemons) would be killed.
func (n *Netns) listen() (net.Listener, error) {
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
		f, err := os.Open(filepath.Join("/var/run/netns", n.Name))
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
		ln, err := net.Listen("tcp", net.JoinHostPort(n.NsAddr, "0"))
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

// Relay starts a Proxy inside the namespace forwarding to target (a
// loopback address of the root namespace) and waits until a connection
// from the root namespace reaches it across the veth. Close stops it.
func (n *Netns) Relay(target string) (*Proxy, error) {
	ln, err := n.listen()
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	n.mu.Lock()
	n.relays = append(n.relays, p)
	n.mu.Unlock()
	if err := reachable(p.Addr, 10*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}
