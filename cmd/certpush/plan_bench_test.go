package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

// The inventory below is laid out as bench/scale's (BenchmarkPlan): the
// same cert, hosts at distinct loopback addresses, a YAML host list up to
// 10,000 hosts and a hosts_file past that. It is copied here because
// bench/scale is another package.

const planCert = "bench.test"

var planDomains = []string{"bench.test", "*.bench.test"}

// fakeRefusedText is in the error of every host the fake dialer fails.
const fakeRefusedText = "fake dialer: connection refused"

// fakeRefused is the fake dialer: it fails at once, as a closed port
// does, without a socket.
func fakeRefused(_ context.Context, addr string) (net.Conn, error) {
	return nil, fmt.Errorf("dial tcp %s: fake dialer: %w", addr, syscall.ECONNREFUSED)
}

// BenchmarkPlanFakeDial plans a push (--dry-run) over n hosts in process,
// with the TCP dial replaced by one that is refused at once: what it
// measures is certpush's plan (inventory, known_hosts, the worker pool,
// the per-host results, log and JSON report), not the kernel's work for n
// refused connections that bench/scale's BenchmarkPlan includes.
//
// It reports the wall time per plan (ns/op, ms/plan), the peak RSS of the
// plan (VmHWM, reset before it through /proc/self/clear_refs) and the RSS
// the plan started from (start-RSS-MB). That
// RSS is the test binary's: it includes the test binary's own code and
// runtime, and the heap left from writing the inventory (released to the
// OS before the run, but not all of it may be), so it is an upper bound
// on certpush's. Run each size in a fresh process, so that one size's
// heap does not count in the next:
//
//	go test -run '^$' -bench 'PlanFakeDial/hosts=100000' -benchtime 1x ./cmd/certpush
func BenchmarkPlanFakeDial(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { benchPlanFakeDial(b, n) })
	}
}

func benchPlanFakeDial(b *testing.B, n int) {
	dir := b.TempDir()
	planState(b, dir)
	// A closed port: were the fake dialer not used, every dial would be
	// refused by the kernel, and the error check below would fail.
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// Past the config file's 4 MiB limit, the hosts come from a host
	// list, as in bench/scale.
	inv := writePlanConfig(b, dir, n, port, n > 10000)

	dialTCP = fakeRefused
	defer func() { dialTCP = nil }()

	outPath := filepath.Join(dir, "out.json")
	errPath := filepath.Join(dir, "err.log")
	args := []string{"--config", inv, "push", planCert, "--dry-run", "--json", "--parallel", "64"}
	var peak, base float64
	var wall time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		// stdout and stderr are files, as when certpush writes to a file
		// or pipe: the tens of MB of JSON are not held in this process.
		stdout, err := os.Create(outPath)
		if err != nil {
			b.Fatal(err)
		}
		stderr, err := os.Create(errPath)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		debug.FreeOSMemory()
		resetPeakRSS(b)
		base = max(base, rssMB(b, "VmRSS:"))
		b.StartTimer()

		t0 := time.Now()
		code := run(context.Background(), args, stdout, stderr)
		w := time.Since(t0)

		b.StopTimer()
		peak = max(peak, rssMB(b, "VmHWM:"))
		wall += w
		stdout.Close()
		stderr.Close()
		if code != 1 {
			msg, _ := os.ReadFile(errPath)
			b.Fatalf("exit %d, want 1 (hosts failed): %.500s", code, msg)
		}
		checkPlanJSON(b, outPath, n)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(peak, "peak-RSS-MB")
	b.ReportMetric(base, "start-RSS-MB")
	b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "ms/plan")
}

// checkPlanJSON checks that the report at path has n hosts of one cert,
// each failed by the fake dialer. It streams the report: at 100,000
// hosts it is tens of MB.
func checkPlanJSON(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var res struct {
		Certs []struct {
			Cert    string `json:"cert"`
			Results []struct {
				Result string `json:"result"`
				Error  string `json:"error"`
			} `json:"results"`
		} `json:"certs"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&res); err != nil {
		b.Fatalf("report: %v", err)
	}
	if len(res.Certs) != 1 || res.Certs[0].Cert != planCert || len(res.Certs[0].Results) != n {
		b.Fatalf("report: %d certs, want %s with %d results", len(res.Certs), planCert, n)
	}
	for i, r := range res.Certs[0].Results {
		if r.Result != "failed" || !strings.Contains(r.Error, fakeRefusedText) {
			b.Fatalf("host %d: result %q, error %q; want failed by the fake dialer", i, r.Result, r.Error)
		}
	}
}

// resetPeakRSS resets this process's VmHWM to its current RSS.
func resetPeakRSS(b *testing.B) {
	b.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("reset peak RSS: %v", err)
	}
}

// rssMB is the field of /proc/self/status named by key (VmRSS:, VmHWM:)
// in MB.
func rssMB(b *testing.B, key string) float64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s %q: %v", key, rest, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// planState makes a state directory holding a current bundle of planCert.
func planState(b *testing.B, dir string) {
	b.Helper()
	ca, err := devca.New("plan bench CA")
	if err != nil {
		b.Fatal(err)
	}
	iss, err := ca.Issue(devca.Leaf{Domains: planDomains})
	if err != nil {
		b.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		b.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	store := &bundle.Store{Dir: filepath.Join(dir, "bundles")}
	if _, _, err := store.Add(planCert, mat, bundle.AddOptions{Domains: planDomains, Source: bundle.SourceImport, Signer: bundle.NewSigner(key), Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}}); err != nil {
		b.Fatal(err)
	}
}

// planHostAddr is host i's loopback address.
func planHostAddr(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/62500, i/250%250, 1+i%250)
}

// writePlanConfig writes a config with n hosts at distinct loopback
// addresses and port, every one in known_hosts: in the YAML config, or,
// with list, in a hosts_file.
func writePlanConfig(b *testing.B, dir string, n, port int, list bool) string {
	b.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "scale")
	if err != nil {
		b.Fatal(err)
	}
	identity := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(identity, pem.EncodeToMemory(block), 0o600); err != nil {
		b.Fatal(err)
	}
	hostKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	var inv, kh bytes.Buffer
	fmt.Fprintf(&inv, "state_dir: %s\nssh:\n  user: certsync\n  identity: %s\n  known_hosts: %s\n  parallel: 64\n  timeout: 10s\n  connect_timeout: 2s\n",
		dir, identity, filepath.Join(dir, "known_hosts"))
	if list {
		var hl bytes.Buffer
		for i := range n {
			fmt.Fprintf(&hl, "%s:%d\n", planHostAddr(i), port)
		}
		hostsFile := filepath.Join(dir, "hosts")
		if err := os.WriteFile(hostsFile, hl.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&inv, "certs:\n  %s:\n    domains: [%q, %q]\n    hosts_file: %s\n    install: now\n", planCert, planDomains[0], planDomains[1], hostsFile)
	} else {
		fmt.Fprintf(&inv, "certs:\n  %s:\n    domains: [%q, %q]\n    hosts: [fleet]\n    install: now\nhosts:\n", planCert, planDomains[0], planDomains[1])
	}
	for i := range n {
		addr := planHostAddr(i)
		if !list {
			fmt.Fprintf(&inv, "  node-%d: {address: %s, port: %d, groups: [fleet], incoming: /srv/certsync/incoming, verify: []}\n", i, addr, port)
		}
		kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(addr, strconv.Itoa(port)))}, hostKey))
		kh.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), kh.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "certpush.yaml")
	if err := os.WriteFile(path, inv.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}
