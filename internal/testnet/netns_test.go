package testnet

import (
	"bufio"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// requireNetns skips without root or the tools, and fails instead under
// CI=true, where they are installed.
func requireNetns(t *testing.T) {
	t.Helper()
	if why := Available(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

// echo serves lines back on a loopback port until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				c.Write([]byte(line))
			}()
		}
	}()
	return ln.Addr().String()
}

// roundTrip sends a line through addr and reports what came back.
func roundTrip(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestNetnsRelayPartitionLoss: a relay inside the namespace carries a
// connection across the veth (its packets counted); with the link down
// nothing gets through and the root namespace still routes the address
// into the pair; back up, it works again; at 100% loss nothing gets
// through; Close removes the namespace.
func TestNetnsRelayPartitionLoss(t *testing.T) {
	requireNetns(t)
	target := echo(t)
	n, err := NewNetns()
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			n.Close()
		}
	})
	p, err := n.Relay(target)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Addr, n.NsAddr+":") {
		t.Fatalf("relay listens on %s, want %s", p.Addr, n.NsAddr)
	}
	if got, err := roundTrip(p.Addr); err != nil || got != "ping\n" {
		t.Fatalf("through the relay: %q %v", got, err)
	}
	if seen, err := n.Counter("seen"); err != nil || seen == 0 {
		t.Fatalf("packets seen on the veth: %d %v", seen, err)
	}

	if err := n.Partition(true); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(p.Addr); err == nil {
		t.Fatalf("through the relay with the link down: %q, want an error", got)
	}
	if err := n.Partition(false); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(p.Addr); err != nil || got != "ping\n" {
		t.Fatalf("through the relay with the link back up: %q %v", got, err)
	}

	if err := n.SetLoss(100); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(p.Addr); err == nil {
		t.Fatalf("through the relay at 100%% loss: %q, want an error", got)
	}
	if dropped, err := n.Counter("dropped"); err != nil || dropped == 0 {
		t.Fatalf("packets dropped: %d %v", dropped, err)
	}

	closed = true
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := run("", "ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, n.Name) {
		t.Errorf("namespace %s still listed after Close:\n%s", n.Name, out)
	}
}
