// Package scale benchmarks certpush against large inventories: planning a
// push over 10,000 unreachable hosts (peak RSS and time), and `certpush
// status` over 1,000 TLS endpoints on loopback.
package scale

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/inventory"
)

const certName = "bench.test"

var domains = []string{"bench.test", "*.bench.test"}

// certpushBin builds certpush as make build does, or takes CERTPUSH_BIN.
func certpushBin(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("CERTPUSH_BIN"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "certpush")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../../cmd/certpush")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build certpush: %v: %s", err, msg)
	}
	return out
}

// state makes a state directory holding a current bundle and returns it
// with the bundle's TLS certificate.
func state(b *testing.B, dir string) tls.Certificate {
	b.Helper()
	ca, err := devca.New("scale bench CA")
	if err != nil {
		b.Fatal(err)
	}
	iss, err := ca.Issue(devca.Leaf{Domains: domains})
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
	if _, _, err := store.Add(certName, mat, bundle.AddOptions{Domains: domains, Source: bundle.SourceImport, Signer: bundle.NewSigner(key), Now: time.Now(), Anchor: bundle.Anchor{Roots: ca.Pool()}}); err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(append(iss.Cert, iss.Chain...), iss.Key)
	if err != nil {
		b.Fatal(err)
	}
	return cert
}

// closedPort returns a TCP port nothing listens on, on any address.
func closedPort(b *testing.B) int {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// writeInventory writes a config with n hosts at distinct loopback
// addresses; verify, when set, gives host i its TLS endpoint.
func writeInventory(b *testing.B, dir string, n, port int, verify func(i int) string) string {
	return writeConfig(b, dir, n, port, verify, false)
}

// writeHostList writes a config whose certificate takes its n hosts from
// a host-list file (hosts_file: one address:port a line), as a very large
// fleet is written: the YAML config stays small.
func writeHostList(b *testing.B, dir string, n, port int) string {
	return writeConfig(b, dir, n, port, nil, true)
}

// hostAddr is host i's loopback address.
func hostAddr(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", 1+i/62500, i/250%250, 1+i%250)
}

func writeConfig(b *testing.B, dir string, n, port int, verify func(i int) string, list bool) string {
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
			fmt.Fprintf(&hl, "%s:%d\n", hostAddr(i), port)
		}
		hostsFile := filepath.Join(dir, "hosts")
		if err := os.WriteFile(hostsFile, hl.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&inv, "certs:\n  %s:\n    domains: [%q, %q]\n    hosts_file: %s\n    install: now\n", certName, domains[0], domains[1], hostsFile)
	} else {
		fmt.Fprintf(&inv, "certs:\n  %s:\n    domains: [%q, %q]\n    hosts: [fleet]\n    install: now\nhosts:\n", certName, domains[0], domains[1])
	}
	for i := range n {
		addr := hostAddr(i)
		v := "[]"
		if verify != nil {
			v = fmt.Sprintf("[%q]", verify(i))
		}
		if !list {
			fmt.Fprintf(&inv, "  node-%d: {address: %s, port: %d, groups: [fleet], incoming: /srv/certsync/incoming, verify: %s}\n", i, addr, port, v)
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

// run runs certpush and returns its wall time, peak RSS in MB and stdout.
func run(b *testing.B, bin string, args ...string) (time.Duration, float64, []byte, error) {
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	var rss float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		rss = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		err = nil // some hosts failed: expected for unreachable hosts
	}
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.Bytes())
	}
	return wall, rss, stdout.Bytes(), err
}

// BenchmarkPlan plans a push (--dry-run) over n unreachable hosts (a
// closed port on distinct loopback addresses: each dial is refused) with
// --parallel p, reporting the wall time and certpush's peak RSS.
func BenchmarkPlan(b *testing.B) {
	bin := certpushBin(b)
	port := closedPort(b)
	for _, n := range []int{1000, 10000, 100000} {
		dir := b.TempDir()
		state(b, dir)
		var inv string
		parallels := []int{8, 64, 256}
		if n > 10000 {
			// Past the config file's 4 MiB limit: the hosts come from a
			// host list (hosts_file), as a fleet this size is written.
			inv = writeHostList(b, dir, n, port)
			parallels = []int{64}
		} else {
			inv = writeInventory(b, dir, n, port, nil)
		}
		for _, p := range parallels {
			b.Run(fmt.Sprintf("hosts=%d/parallel=%d", n, p), func(b *testing.B) {
				var peak float64
				var wall time.Duration
				for b.Loop() {
					w, rss, out, err := run(b, bin, "--config", inv, "push", certName, "--dry-run", "--json", "--parallel", strconv.Itoa(p))
					if err != nil {
						b.Fatal(err)
					}
					var res struct {
						Certs []struct {
							Results []struct{ Result string } `json:"results"`
						} `json:"certs"`
					}
					if err := json.Unmarshal(out, &res); err != nil || len(res.Certs) != 1 || len(res.Certs[0].Results) != n {
						b.Fatalf("output: %v: %.300s", err, out)
					}
					peak = max(peak, rss)
					wall += w
				}
				b.ReportMetric(peak, "peak-RSS-MB")
				b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "ms/plan")
			})
		}
	}
}

// BenchmarkStatus runs `certpush status` over 1,000 and 10,000 TLS
// endpoints: one Go TLS server listening on that many loopback ports,
// serving the current bundle, so that every endpoint must come out
// aligned.
func BenchmarkStatus(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("endpoints=%d", n), func(b *testing.B) { benchStatus(b, n) })
	}
}

func benchStatus(b *testing.B, n int) {
	bin := certpushBin(b)
	dir := b.TempDir()
	cert := state(b, dir)
	// The key exchanges OpenSSL 3.0 offers (nginx on Debian 12): no
	// post-quantum hybrid on the server side.
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
	var lns []net.Listener
	var wg sync.WaitGroup
	defer func() {
		for _, l := range lns {
			l.Close()
		}
		wg.Wait()
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		lns = append(lns, l)
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					tc := tls.Server(c, cfg)
					tc.SetDeadline(time.Now().Add(5 * time.Second))
					if tc.Handshake() == nil {
						tc.Close()
					}
				}()
			}
		})
	}
	inv := writeInventory(b, dir, n, closedPort(b), func(i int) string { return lns[i].Addr().String() })
	var worst time.Duration
	var total time.Duration
	for b.Loop() {
		w, rss, out, err := run(b, bin, "--config", inv, "status", "--json")
		if err != nil {
			b.Fatal(err)
		}
		var res struct {
			Counts map[string]int `json:"counts"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.Counts["aligned"] != n {
			b.Fatalf("status: %v: %v", err, res.Counts)
		}
		worst = max(worst, w)
		total += w
		b.ReportMetric(rss, "peak-RSS-MB")
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/status")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
}

// BenchmarkInventoryHeap loads a 10,000-host inventory in process and
// reports the live heap it holds afterwards: how much of certpush's memory
// grows with the inventory.
func BenchmarkInventoryHeap(b *testing.B) {
	const n = 10000
	dir := b.TempDir()
	inv := writeInventory(b, dir, n, closedPort(b), nil)
	var before, after runtime.MemStats
	var keep []inventory.Host
	for b.Loop() {
		keep = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		cfg, err := inventory.Load(inv)
		if err != nil {
			b.Fatal(err)
		}
		if keep, err = cfg.HostsFor(certName); err != nil || len(keep) != n {
			b.Fatalf("hosts: %d, %v", len(keep), err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(cfg)
	}
	held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ReportMetric(held/(1<<20), "heap-held-MB")
	b.ReportMetric(held/n, "heap-B/host")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "allocated-MB")
}
