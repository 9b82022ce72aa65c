package push

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// TestKnownIndex: the lines the index offers for a host, once matched,
// are exactly the lines a pass over the whole file matches, for plain
// names (any case, in lists, with and without port), wildcards,
// negations, hashed names and markers; and with a line per host, a host
// gets only its own lines to try.
func TestKnownIndex(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	file := strings.Join([]string{
		"a.example.com " + k,
		"B.Example.COM,c.example.com " + k,
		"[a.example.com]:2222 " + k,
		"*.example.org " + k,
		"*.example.com,!bad.example.com " + k,
		"node?.example.net " + k,
		knownhosts.HashHostname("[d.example.com]:2222") + " " + k,
		"@revoked c.example.com " + k,
		"@cert-authority *.example.com " + k,
		"@cert-authority e.example.com,a.example.com " + k,
	}, "\n")
	lines, bad, err := parseKnownHosts(strings.NewReader(file))
	if err != nil || len(bad) != 0 {
		t.Fatalf("parse: %v %v", err, bad)
	}
	hk := &hostKeys{lines: lines, index: newKnownIndex(lines)}
	all := &hostKeys{lines: lines}
	matching := func(k *hostKeys, host hostNames) []int {
		var out []int
		for _, l := range k.linesFor(host) {
			if host.match(l.patterns) {
				out = append(out, l.line)
			}
		}
		return out
	}
	for _, addr := range []string{"a.example.com:22", "A.EXAMPLE.COM:2222", "b.example.com:22", "c.example.com:22", "bad.example.com:22",
		"x.example.org:22", "node1.example.net:22", "d.example.com:2222", "d.example.com:22", "e.example.com:22", "none.test:22"} {
		host := lookupNames(addr)
		got, want := matching(hk, host), matching(all, host)
		if !slices.Equal(got, want) {
			t.Errorf("%s: index matches lines %v, a full pass %v", addr, got, want)
		}
	}
	if got := matching(hk, lookupNames("A.EXAMPLE.COM:2222")); !slices.Contains(got, 3) || !slices.Contains(got, 1) {
		t.Errorf("[a.example.com]:2222 and the bare name: lines %v, want 1 and 3 among them", got)
	}

	// A line per host: each host is offered its own line only.
	var big strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&big, "[10.%d.%d.%d]:2222 %s\n", i/65536, i/256%256, i%256, k)
	}
	lines, _, err = parseKnownHosts(strings.NewReader(big.String()))
	if err != nil {
		t.Fatal(err)
	}
	hk = &hostKeys{lines: lines, index: newKnownIndex(lines)}
	for _, i := range []int{0, 777, 19999} {
		addr := fmt.Sprintf("10.%d.%d.%d:2222", i/65536, i/256%256, i%256)
		c := hk.linesFor(lookupNames(addr))
		if len(c) != 1 || c[0].line != i+1 {
			t.Errorf("%s: %d candidate lines, want its own (line %d) only", addr, len(c), i+1)
		}
		if err := hk.known(lookupNames(addr), key); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// BenchmarkHostKeyCheck checks one host's key, and picks its host key
// algorithms, against a known_hosts of 100,000 lines (one a host), with
// and without the index: what a push to that many hosts does per host.
func BenchmarkHostKeyCheck(b *testing.B) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	k := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	var big strings.Builder
	const n = 100000
	for i := range n {
		fmt.Fprintf(&big, "[10.%d.%d.%d]:2222 %s\n", i/65536, i/256%256, i%256, k)
	}
	lines, _, err := parseKnownHosts(strings.NewReader(big.String()))
	if err != nil {
		b.Fatal(err)
	}
	for _, indexed := range []bool{false, true} {
		hk := &hostKeys{lines: lines, now: time.Now}
		if indexed {
			hk.index = newKnownIndex(lines)
		}
		b.Run(fmt.Sprintf("index=%v", indexed), func(b *testing.B) {
			i := 0
			for b.Loop() {
				i = (i + 7919) % n
				addr := fmt.Sprintf("10.%d.%d.%d:2222", i/65536, i/256%256, i%256)
				hk.algorithms(addr)
				if err := hk.check(addr, nil, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConnectError: a failed connect says what the dialer said and still
// answers errors.Is for its cause.
func TestConnectError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, derr := net.Dial("tcp", addr)
	if derr == nil {
		t.Skip("the closed port accepted")
	}
	err = connectFailed(derr)
	if err.Error() != "connect: "+derr.Error() || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect error %q (is ECONNREFUSED: %v), from %q", err, errors.Is(err, syscall.ECONNREFUSED), derr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	var d net.Dialer
	_, derr = d.DialContext(ctx, "tcp", addr)
	if err := connectFailed(derr); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timed out connect %q: not DeadlineExceeded (from %q)", err, derr)
	}
}
