// Package pull benchmarks pull mode end to end: N real nodes, each its
// own nginx serving TLS and its own certnode.yaml with a store: section
// and age identity, all run `certnode pull` at the same moment right
// after `certpush import` published a new certificate to a real
// versitygw on loopback. The figure is the time from the publish until
// every node's nginx serves the new certificate over TLS.
//
// Run (as root, with nginx, sshd and versitygw installed):
//
//	go test -run '^$' -bench PullConverge -benchtime 3x ./bench/pull
//
// PULL_NODES sets the number of nodes (default 50). CERTPUSH_BIN and
// CERTNODE_BIN name built binaries; without them both are built.
package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/certpush/certpush/internal/teststore"
)

const certName = "pull.bench.test"

var domains = []string{"pull.bench.test", "*.pull.bench.test"}

// defaultNodes is the issue's figure: 50 nodes converge within 5 s.
const defaultNodes = 50

// roundTimeout bounds one round (publish, every pull, every probe).
const roundTimeout = 2 * time.Minute

// pollEvery is how often a node's live link is looked at, and, once it
// moved, how often its nginx is probed at first.
const pollEvery = 5 * time.Millisecond

// maxProbeEvery caps the probe interval's backoff: the figure of a node
// is at most this late.
const maxProbeEvery = 20 * time.Millisecond

func nodeCount(b *testing.B) int {
	s := os.Getenv("PULL_NODES")
	if s == "" {
		return defaultNodes
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("PULL_NODES=%q: want a positive number", s)
	}
	return n
}

// BenchmarkPullConverge is one publish followed by every node's
// `certnode pull` started at once (as their timers firing together);
// an op ends when every node's nginx serves the new certificate.
// Metrics: s-to-all-converged (publish start to the last node serving,
// the op), s-publish (the import that publishes), s-slowest-node and
// s-median-node (pull start to that node serving, over every node of
// every round), s-all-exited (pull start to the last certnode exit).
func BenchmarkPullConverge(b *testing.B) {
	testfleet.Require(b, testfleet.SSHD, testfleet.Nginx, testfleet.SFTPServer, teststore.Binary())
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			b.Fatal("the pull benchmark needs root (the fleet account runs nginx and certnode)")
		}
		b.Skip("the pull benchmark needs root (the fleet account runs nginx and certnode)")
	}
	n := nodeCount(b)
	b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchConverge(b, n) })
}

// world is the publishing side (certpush.yaml with a store: section),
// the store and the fleet of pull nodes.
type world struct {
	b        *testing.B
	dir      string
	certpush string
	config   string
	fleet    *testfleet.Fleet
	env      []string // the nodes' environment, as /etc/certnode/env gives it
	lastNB   time.Time
}

func benchConverge(b *testing.B, n int) {
	w := setup(b, n)
	// The first round is not timed: every node goes from the fleet's
	// bootstrap placeholder to a certificate from the store, as at boot;
	// the timed rounds are then the timer's case, one stored
	// certificate to the next.
	w.round("boot round (untimed)")

	var toAll, publish, exited time.Duration
	var perNode []time.Duration
	rounds := 0
	b.ResetTimer()
	for b.Loop() {
		r := w.round(fmt.Sprintf("round %d", rounds+1))
		rounds++
		toAll += r.toAll
		publish += r.publish
		exited += r.exited
		perNode = append(perNode, r.nodes...)
	}
	b.StopTimer()
	slices.Sort(perNode)
	b.ReportMetric((toAll / time.Duration(rounds)).Seconds(), "s-to-all-converged")
	b.ReportMetric((publish / time.Duration(rounds)).Seconds(), "s-publish")
	b.ReportMetric(perNode[len(perNode)-1].Seconds(), "s-slowest-node")
	b.ReportMetric(perNode[len(perNode)/2].Seconds(), "s-median-node")
	b.ReportMetric((exited / time.Duration(rounds)).Seconds(), "s-all-exited")
}

func setup(b *testing.B, n int) *world {
	b.Helper()
	w := &world{b: b, dir: b.TempDir()}
	w.config = filepath.Join(w.dir, "certpush.yaml")
	stateDir := filepath.Join(w.dir, "state")
	var certnode string
	w.certpush, certnode = binaries(b)
	signer, err := bundle.LoadOrCreateSigner(stateDir)
	if err != nil {
		b.Fatal(err)
	}
	// Every host starts at once (sshd and nginx each); allow for a
	// slow machine at 50.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	w.fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts: n, CertName: certName, Domains: domains, Certnode: certnode,
		TrustedKey: signer.PublicKey(), Signer: signer, Logger: testlog.AtLevel(b, slog.LevelWarn),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := w.fleet.Close(); err != nil {
			b.Error(err)
		}
	})
	// teststore puts the server's keys in the AWS environment variables,
	// which certpush (run by this process) inherits.
	s3 := teststore.Start(b)
	sc := s3.Config("fleet")
	w.env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"AWS_ACCESS_KEY_ID=" + teststore.AccessKey, "AWS_SECRET_ACCESS_KEY=" + teststore.SecretKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true"}

	// Each node its own age identity (0600, the fleet account's), as
	// docs/pull-mode.md configures a node.
	var recipients []string
	for _, h := range w.fleet.Hosts {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(h.Dir, "identity.age")
		if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Chown(path, w.fleet.UID, w.fleet.GID); err != nil {
			b.Fatal(err)
		}
		recipients = append(recipients, id.Recipient().String())
		appendFile(b, h.CertnodeConfig, fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  identity: %s\n  node_id: %s\n",
			sc.URL, sc.Endpoint, path, h.Name))
	}
	extra := fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  recipients: [%s]\n",
		sc.URL, sc.Endpoint, strings.Join(recipients, ", "))
	if err := w.fleet.WriteInventory(w.config, testfleet.InventoryOptions{StateDir: stateDir, Extra: extra}); err != nil {
		b.Fatal(err)
	}
	return w
}

// binaries returns certpush and certnode: CERTPUSH_BIN and CERTNODE_BIN,
// or both built as make build does. The fleet copies certnode to where
// its account can run it.
func binaries(b *testing.B) (certpush, certnode string) {
	b.Helper()
	certpush, certnode = os.Getenv("CERTPUSH_BIN"), os.Getenv("CERTNODE_BIN")
	dir := b.TempDir()
	for _, bin := range []struct {
		path *string
		pkg  string
	}{{&certpush, "certpush"}, {&certnode, "certnode"}} {
		if *bin.path != "" {
			continue
		}
		*bin.path = filepath.Join(dir, bin.pkg)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", *bin.path, "../../cmd/"+bin.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as the packages are
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v: %s", bin.pkg, err, msg)
		}
	}
	return certpush, certnode
}

func appendFile(b *testing.B, path, text string) {
	b.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// issue makes a certificate issued after every earlier one (x509 times
// are whole seconds) and writes its files; the key 0600 from creation.
func (w *world) issue() (fingerprint string, cert, chain, key string) {
	b := w.b
	b.Helper()
	nb := time.Now().Add(-time.Second).Truncate(time.Second)
	if !nb.After(w.lastNB) {
		nb = w.lastNB.Add(time.Second)
		time.Sleep(time.Until(nb.Add(10 * time.Millisecond)))
	}
	w.lastNB = nb
	is, err := w.fleet.CA.Issue(devca.Leaf{Domains: domains, NotBefore: nb})
	if err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(w.dir, "issued-")
	if err != nil {
		b.Fatal(err)
	}
	paths := [3]string{}
	for i, f := range []struct {
		name string
		data []byte
	}{{"cert.pem", is.Cert}, {"chain.pem", is.Chain}, {"key.pem", is.Key}} {
		paths[i] = filepath.Join(dir, f.name)
		fh, err := os.OpenFile(paths[i], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		_, err = fh.Write(f.data)
		if err := errors.Join(err, fh.Close()); err != nil {
			b.Fatal(err)
		}
	}
	return bundle.Fingerprint(is.Leaf), paths[0], paths[1], paths[2]
}

// result is one round.
type result struct {
	publish time.Duration   // the import that published
	toAll   time.Duration   // publish start to the last node serving
	exited  time.Duration   // pull start to the last certnode exit
	nodes   []time.Duration // pull start to each node serving
}

// round publishes a new certificate, starts every node's certnode pull
// at once and waits until every nginx serves it. The benchmark timer
// runs from the publish to the last node serving; the issuing before and
// the wait for the certnode processes to exit after are not timed.
func (w *world) round(label string) result {
	b := w.b
	b.Helper()
	b.StopTimer()
	fp, cert, chain, key := w.issue()
	hosts := w.fleet.Hosts
	// Each node's live link before the pull: the probe starts once it
	// moved, so that N nodes are not probed every few milliseconds for
	// the whole round.
	before := make([]string, len(hosts))
	for i, h := range hosts {
		before[i] = liveTarget(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()

	b.StartTimer()
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, w.certpush, "--config", w.config, "import", certName, "--cert", cert, "--chain", chain, "--key", key)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("published")) {
		b.Fatalf("certpush import: %v (want it published): %s", err, out)
	}
	publish := time.Since(t0)

	var r result
	r.publish = publish
	r.nodes = make([]time.Duration, len(hosts))
	served := make([]time.Time, len(hosts))
	exitedAt := make([]time.Time, len(hosts))
	errs := make([]error, len(hosts))
	outs := make([]bytes.Buffer, len(hosts))
	gate := make(chan struct{})
	// ready: every goroutine waits at the gate; settled: every node
	// serves the new certificate (or failed); wg: every certnode exited.
	var ready, settled, wg sync.WaitGroup
	ready.Add(len(hosts))
	settled.Add(len(hosts))
	for i, h := range hosts {
		c := exec.CommandContext(ctx, w.fleet.Certnode, "--config", h.CertnodeConfig, "pull")
		c.Dir = "/"
		c.Env = append(slices.Clip(w.env), "HOME="+h.Dir)
		c.Stdout, c.Stderr = &outs[i], &outs[i]
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.fleet.UID), Gid: uint32(w.fleet.GID)}}
		wg.Go(func() {
			var once sync.Once
			settle := func() { once.Do(settled.Done) }
			defer settle()
			ready.Done()
			<-gate
			if err := c.Start(); err != nil {
				errs[i] = fmt.Errorf("%s: start certnode pull: %w", h.Name, err)
				return
			}
			done := make(chan error, 1)
			go func() { done <- c.Wait() }()
			var exitErr error
			exited := false
			delay := pollEvery
			for served[i].IsZero() {
				select {
				case exitErr = <-done:
					exited, exitedAt[i] = true, time.Now()
					if exitErr != nil {
						errs[i] = fmt.Errorf("%s: certnode pull: %v: %s", h.Name, exitErr, outs[i].String())
						return
					}
				case <-ctx.Done():
					if !exited {
						<-done // killed by the context
					}
					errs[i] = fmt.Errorf("%s: not serving the new certificate after %s: %s", h.Name, roundTimeout, outs[i].String())
					return
				case <-time.After(delay):
				}
				if liveTarget(h) == before[i] {
					if exited {
						errs[i] = fmt.Errorf("%s: certnode pull exited 0 without installing: %s", h.Name, outs[i].String())
						return
					}
					continue
				}
				if exited && time.Since(exitedAt[i]) > 5*time.Second {
					errs[i] = fmt.Errorf("%s: certnode pull installed, but nginx does not serve the new certificate 5 s later: %s", h.Name, outs[i].String())
					return
				}
				if got, err := h.ServedFingerprint(ctx, ""); err == nil && got == fp {
					served[i] = time.Now()
				}
				// Between the link's swap and nginx's reload (its
				// config test, under load), back off so that N nodes'
				// handshakes do not load the machine they measure.
				delay = min(2*delay, maxProbeEvery)
			}
			settle()
			if !exited {
				if exitErr = <-done; exitErr != nil {
					errs[i] = fmt.Errorf("%s: certnode pull: %v: %s", h.Name, exitErr, outs[i].String())
				}
				exitedAt[i] = time.Now()
			}
		})
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	// The clock stops at the last node serving; the exits are not timed.
	settled.Wait()
	b.StopTimer()
	wg.Wait()
	// b.Loop wants the timer running.
	defer b.StartTimer()
	var last time.Time
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	for i := range hosts {
		if !bytes.Contains(outs[i].Bytes(), []byte("installed")) {
			b.Fatalf("%s: certnode pull did not say installed: %s", hosts[i].Name, outs[i].String())
		}
		r.nodes[i] = served[i].Sub(start)
		if served[i].After(last) {
			last = served[i]
		}
		r.exited = max(r.exited, exitedAt[i].Sub(start))
	}
	r.toAll = last.Sub(t0)
	b.Logf("%s, %d nodes: publish %s, all serving %s after the publish started (slowest node %s, all certnode exited %s)",
		label, len(hosts), publish.Round(time.Millisecond), r.toAll.Round(time.Millisecond),
		slices.Max(r.nodes).Round(time.Millisecond), r.exited.Round(time.Millisecond))
	return r
}

// liveTarget is where the host's live link for the certificate points.
func liveTarget(h *testfleet.Host) string {
	t, _ := os.Readlink(filepath.Join(h.Root, "live", certName))
	return t
}
