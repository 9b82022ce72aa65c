package pull

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/teststore"
)

// Benchmarks of pull mode against a real versitygw on loopback (figures
// in docs/pull-mode.md). Run: go test -run XXX -bench . ./internal/pull/

func benchWorld(b *testing.B) (*world, *teststore.Server) {
	srv := teststore.Start(b)
	return newWorld(b, srv.Config("bench")), srv
}

// BenchmarkPullNotModified is one no-op pull in process: one conditional
// GET answered 304.
func BenchmarkPullNotModified(b *testing.B) {
	w, _ := benchWorld(b)
	w.publish(w.issue(time.Now().Add(-time.Hour)))
	p := w.node(w.nodeIdentity)
	p.Logger, p.Installer.Logger = nil, nil
	if r := pullOne(b, p); r.Result.Result != install.Installed {
		b.Fatalf("first pull: %s %v", r.Result.Result, r.Err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		rs, err := p.Pull(ctx, nil)
		if err != nil || !rs[0].NotModified {
			b.Fatalf("pull: %v %+v", err, rs)
		}
	}
}

// BenchmarkPullProcess is `certnode pull` as a whole process when
// nothing changed (start, config, identity, one 304, exit).
func BenchmarkPullProcess(b *testing.B) {
	w, srv := benchWorld(b)
	w.publish(w.issue(time.Now().Add(-time.Hour)))
	dir := b.TempDir()
	// certnode is built as the packages build it (packaging/deb.sh):
	// static, which starts about 5 ms sooner than a binary linked against
	// libc. CERTNODE_BENCH_BIN names another binary to measure instead.
	bin := os.Getenv("CERTNODE_BENCH_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "certnode")
		build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/certpush/certpush/cmd/certnode")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("build certnode: %v\n%s", err, out)
		}
	}
	sc := srv.Config("bench")
	cfg := filepath.Join(dir, "certnode.yaml")
	yaml := fmt.Sprintf("root: %s/etc\nincoming: %s/incoming\ntrusted_keys: [%q]\nroots: %s\nstore:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  identity: %s\n  node_id: bench\ncerts:\n  %s: {}\n",
		dir, dir, w.signer.PublicKey(), w.roots, sc.URL, sc.Endpoint, w.nodeIdentity, name)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		b.Fatal(err)
	}
	// cpu is the CPU time (user and system) of the certnode processes:
	// steadier than the wall time on a machine that is busy otherwise.
	var cpu time.Duration
	run := func() {
		cmd := exec.Command(bin, "--config", cfg, "pull")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("certnode pull: %v\n%s", err, out)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	run()
	cpu = 0
	b.ResetTimer()
	n := 0
	for b.Loop() {
		run()
		n++
	}
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(n), "cpu-ms/op")
}

// BenchmarkPublish is one publish of a new bundle: five create-only
// writes, five read-backs, the current read and its conditional move.
func BenchmarkPublish(b *testing.B) {
	w, _ := benchWorld(b)
	p := w.publisher()
	p.Logger = nil
	ctx := context.Background()
	start := time.Now().Add(-24 * time.Hour)
	i := 0
	for b.Loop() {
		b.StopTimer()
		bd := w.issue(start.Add(time.Duration(i) * time.Second))
		i++
		b.StartTimer()
		if r, err := p.Publish(ctx, bd, PublishOptions{}); err != nil || r.Result != Published {
			b.Fatalf("publish: %v %+v", err, r)
		}
	}
}

// BenchmarkConverge50 is 50 nodes pulling at once right after a publish,
// each downloading, decrypting and installing the new bundle (no
// service: the install pipeline without reload or TLS check).
func BenchmarkConverge50(b *testing.B) {
	w, _ := benchWorld(b)
	start := time.Now().Add(-24 * time.Hour)
	w.publish(w.issue(start))
	nodes := make([]*Puller, 50)
	for i := range nodes {
		nodes[i] = w.node(w.nodeIdentity)
		nodes[i].Logger, nodes[i].Installer.Logger = nil, nil
	}
	ctx := context.Background()
	i := 1
	for b.Loop() {
		b.StopTimer()
		var bd *bundle.Bundle = w.issue(start.Add(time.Duration(i) * time.Minute))
		i++
		w.publisher().Publish(ctx, bd, PublishOptions{})
		b.StartTimer()
		var wg sync.WaitGroup
		for _, p := range nodes {
			wg.Go(func() {
				rs, err := p.Pull(ctx, nil)
				if err != nil || rs[0].Result.Result != install.Installed {
					b.Errorf("pull: %v %+v", err, rs)
				}
			})
		}
		wg.Wait()
	}
}
