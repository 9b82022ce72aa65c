// Package node benchmarks the node side: certnode's install path with a
// no-op reload, and the start and full install of the certnode binary.
package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/wire"
)

const certName = "bench.test"

var domains = []string{"bench.test", "*.bench.test"}

// node is a certnode root and incoming directory with a config.
type node struct {
	dir, config, incoming string
	ca                    *devca.CA
	signer                *bundle.Signer
	start                 time.Time
	serial                int
}

func newNode(b *testing.B, reload string) *node {
	b.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := devca.New("node bench CA")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	n := &node{dir: dir, config: filepath.Join(dir, "certnode.yaml"), incoming: filepath.Join(dir, "incoming"),
		ca: ca, signer: bundle.NewSigner(key), start: time.Now()}
	roots := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(roots, ca.RootPEM(), 0o644); err != nil {
		b.Fatal(err)
	}
	conf := fmt.Sprintf(`root: %s
incoming: %s
trusted_keys: [%q]
roots: %s
keep: 3
defaults:
  test: []
  reload: %s
  verify: []
certs:
  %s:
    domains: ["bench.test", "*.bench.test"]
`, filepath.Join(dir, "root"), n.incoming, n.signer.PublicKey(), roots, reload, certName)
	if err := os.WriteFile(n.config, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	return n
}

// issue makes a new signed bundle, issued after every earlier one.
func (n *node) issue(b *testing.B) (*bundle.Material, *bundle.Manifest) {
	b.Helper()
	n.serial++
	nb := n.start.Add(-time.Hour + time.Duration(n.serial)*time.Second)
	iss, err := n.ca.Issue(devca.Leaf{Domains: domains, NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		b.Fatal(err)
	}
	m := bundle.NewManifest(certName, mat, bundle.SourceImport, time.Now())
	if err := n.signer.Sign(m); err != nil {
		b.Fatal(err)
	}
	return mat, m
}

// upload lays out a new bundle in incoming as a push leaves it, and
// returns its id.
func (n *node) upload(b *testing.B) string {
	b.Helper()
	mat, m := n.issue(b)
	if err := bundle.Write(filepath.Join(n.incoming, certName, m.ID), mat, m); err != nil {
		b.Fatal(err)
	}
	return m.ID
}

// BenchmarkInstall is the install path of certnode in process: verify,
// copy into the archive, swap the link, run the reload (`true`, or none),
// publish the status, prune old versions.
func BenchmarkInstall(b *testing.B) {
	for _, tc := range []struct{ desc, reload string }{
		{"reload=true", "[true]"},
		{"reload=none", "[]"},
	} {
		b.Run(tc.desc, func(b *testing.B) {
			n := newNode(b, tc.reload)
			cfg, err := install.LoadConfig(n.config)
			if err != nil {
				b.Fatal(err)
			}
			in := &install.Installer{Config: cfg}
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				id := n.upload(b)
				b.StartTimer()
				rs, err := in.Install(ctx, []string{certName}, install.Options{ID: id})
				if err != nil {
					b.Fatal(err)
				}
				if len(rs) != 1 || rs[0].Result != install.Installed {
					b.Fatalf("install: %+v", rs)
				}
			}
		})
	}
}

// certnodeBin builds certnode as make build does.
func certnodeBin(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("CERTNODE_BIN"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "certnode")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../../cmd/certnode")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as the packages are
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build certnode: %v: %s", err, msg)
	}
	return out
}

// BenchmarkStart is `certnode version`: process start to exit.
func BenchmarkStart(b *testing.B) {
	bin := certnodeBin(b)
	for b.Loop() {
		if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
			b.Fatalf("certnode version: %v: %s", err, out)
		}
	}
}

// BenchmarkInstallCLI is the whole `certnode install --json --id ID NAME`
// as certpush runs it: start, config, install with a no-op reload.
func BenchmarkInstallCLI(b *testing.B) {
	bin := certnodeBin(b)
	n := newNode(b, "[true]")
	for b.Loop() {
		b.StopTimer()
		id := n.upload(b)
		b.StartTimer()
		out, err := exec.Command(bin, "--config", n.config, "install", "--json", "--id", id, certName).CombinedOutput()
		if err != nil {
			b.Fatalf("certnode install: %v: %s", err, out)
		}
	}
}

// issueStream makes a new bundle, issued after every earlier one, as the
// bundle stream certpush sends to certnode install --stdin, and returns
// its id.
func (n *node) issueStream(b *testing.B) (string, []byte) {
	b.Helper()
	mat, m := n.issue(b)
	manifest, err := m.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	contents := bundle.Contents(mat)
	files := []wire.File{{Name: bundle.ManifestFile, Data: manifest}}
	for _, f := range bundle.Files {
		files = append(files, wire.File{Name: f, Data: contents[f]})
	}
	return m.ID, wire.EncodeStream(files)
}

// BenchmarkInstallStdinCLI is the whole `certnode install --json --stdin
// --id ID NAME` as certpush runs it on an install: now host: start,
// config, the bundle read from stdin, install with a no-op reload.
func BenchmarkInstallStdinCLI(b *testing.B) {
	bin := certnodeBin(b)
	n := newNode(b, "[true]")
	for b.Loop() {
		b.StopTimer()
		id, stream := n.issueStream(b)
		b.StartTimer()
		cmd := exec.Command(bin, "--config", n.config, "install", "--json", "--stdin", "--id", id, certName)
		cmd.Stdin = bytes.NewReader(stream)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("certnode install: %v: %s", err, out)
		}
	}
}

// syncCall matches the start of a sync call in strace's output (not its
// "resumed" line).
var syncCall = regexp.MustCompile(`(?m)^\d+\s+(fsync|fdatasync|sync_file_range)\(`)

// BenchmarkInstallSyncs counts the fsync and fdatasync calls of one
// `certnode install --stdin` (a new bundle) and of one that finds the
// bundle installed, under strace: the syncs/op metric.
func BenchmarkInstallSyncs(b *testing.B) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		b.Skip("strace not installed")
	}
	bin := certnodeBin(b)
	for _, again := range []bool{false, true} {
		b.Run(map[bool]string{false: "new", true: "unchanged"}[again], func(b *testing.B) {
			n := newNode(b, "[true]")
			// As on a node set up for both modes: certnode publishes
			// its status there.
			if err := os.MkdirAll(n.incoming, 0o755); err != nil {
				b.Fatal(err)
			}
			syncs := 0
			for b.Loop() {
				b.StopTimer()
				id, stream := n.issueStream(b)
				run := func(trace string) {
					args := []string{bin, "--config", n.config, "install", "--json", "--stdin", "--id", id, certName}
					if trace != "" {
						args = append([]string{strace, "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,sync_file_range", "-o", trace}, args...)
					}
					cmd := exec.Command(args[0], args[1:]...)
					cmd.Stdin = bytes.NewReader(stream)
					if out, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("certnode install: %v: %s", err, out)
					}
				}
				if again {
					run("")
				}
				trace := filepath.Join(b.TempDir(), "trace")
				b.StartTimer()
				run(trace)
				b.StopTimer()
				data, err := os.ReadFile(trace)
				if err != nil {
					b.Fatal(err)
				}
				syncs += len(syncCall.FindAll(data, -1))
				if os.Getenv("SHOW_SYNCS") != "" {
					os.WriteFile(os.Getenv("SHOW_SYNCS"), data, 0o644)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(syncs)/float64(b.N), "syncs/op")
		})
	}
}
