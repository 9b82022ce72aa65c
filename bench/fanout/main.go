// Command fanout measures pushing one certificate to N real sshd hosts on
// loopback with certpush, against the SSH floor (one connection per host
// running `true`), a sequential rsync+ssh loop (OpenSSH's default settings)
// and parallel-scp + parallel-ssh (once forcing curve25519 as certpush does,
// once at OpenSSH's defaults). Every run is checked: each host must have installed every
// file of the bundle with the right hash and mode. Results go to a JSON
// file and into the marked section of BENCHMARKS.md.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/testfleet"
)

const certName = "bench.test"

var domains = []string{"bench.test", "*.bench.test"}

// Methods, in the order of the results table.
const (
	mFloor = "floor"
	mPush  = "push"
	mRerun = "rerun"
	mPSSH  = "pssh"         // key exchange forced to curve25519, like Go's
	mPSSHD = "pssh-default" // OpenSSH's default key exchange (sntrup761x25519 in 9.2)
	mRsync = "rsync"        // OpenSSH's defaults
	// The same with another certpush build (-baseline), for comparisons
	// of changes.
	mPushB  = "push-baseline"
	mRerunB = "rerun-baseline"
)

var methodTitle = map[string]string{
	mFloor:  "floor: Go x/crypto/ssh, 1 connection/host, `true`",
	mPush:   "certpush push + install",
	mRerun:  "certpush push, unchanged (all skipped)",
	mPSSH:   "parallel-scp + parallel-ssh, curve25519 (install)",
	mPSSHD:  "parallel-scp + parallel-ssh, OpenSSH defaults (install)",
	mRsync:  "sequential rsync + ssh loop, OpenSSH defaults (install)",
	mPushB:  "baseline certpush push + install",
	mRerunB: "baseline certpush push, unchanged",
}

type config struct {
	certpush, certnode string
	baseline           string
	only               string
	sizes              []int
	reps               int
	parallel           int
	rsyncMax           int
	out, jsonOut       string
	section            string
	profileDir         string
	keep               bool
	// Round-trip runs (-rtt): delays and sizes.
	rtts, rttSizes []int
	// The least-privilege path beside the root path (-lp).
	lpOn  bool
	hooks string
}

func main() {
	var c config
	var sizes string
	flag.StringVar(&c.certpush, "certpush", "bin/certpush", "certpush binary")
	flag.StringVar(&c.certnode, "certnode", "bin/certnode", "certnode binary")
	flag.StringVar(&c.baseline, "baseline", "", "another certpush binary measured the same way, for comparisons")
	flag.StringVar(&c.only, "methods", "", "measure only these methods (comma-separated: floor,push,pssh,pssh-default,rsync,push-baseline,floor-lp,push-lp)")
	flag.StringVar(&sizes, "sizes", "10,100,200", "fleet sizes, comma-separated")
	flag.IntVar(&c.reps, "reps", 3, "repetitions of every (size, method)")
	flag.IntVar(&c.parallel, "parallel", 64, "hosts in flight (certpush, floor, pssh)")
	flag.IntVar(&c.rsyncMax, "rsync-max", 1000, "skip the sequential rsync loop above this size")
	flag.StringVar(&c.out, "md", "", "rewrite the marked results section of this markdown file")
	flag.StringVar(&c.section, "section", "fanout", "name of the marked section: <!-- NAME:begin --> ... <!-- NAME:end -->")
	flag.StringVar(&c.jsonOut, "json", "", "write raw results to this file")
	flag.StringVar(&c.profileDir, "profile", "", "write CPU profiles of an in-process push, re-run and floor at the largest size to this directory, then stop")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	flag.BoolVar(&c.lpOn, "lp", false, "also measure the least-privilege path: forced command, sudo -n, root's certnode (needs root and sudo)")
	flag.StringVar(&c.hooks, "hooks", "hooks", "directory of the shipped certnode-forced-command and sudoers.certnode")
	var rtts, rttSizes string
	flag.StringVar(&rtts, "rtt", "", "instead of the fan-out runs, measure round trips behind a delay proxy per host at these RTTs in ms (comma-separated, e.g. 0,10,50)")
	flag.StringVar(&rttSizes, "rtt-sizes", "1,100", "sizes of the round-trip runs (all hosts of a size at once)")
	flag.Parse()
	if rtts != "" {
		var err error
		if c.rtts, err = intList(rtts, 0); err == nil {
			c.rttSizes, err = intList(rttSizes, 1)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "fanout: %v\n", err)
			os.Exit(2)
		}
		c.sizes = c.rttSizes
	}
	for _, s := range strings.Split(sizes, ",") {
		if c.rtts != nil {
			break
		}
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "fanout: bad size %q\n", s)
			os.Exit(2)
		}
		c.sizes = append(c.sizes, n)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(context.Background(), c, log); err != nil {
		log.Error("fanout", "error", err)
		os.Exit(1)
	}
}

// intList parses comma-separated integers of at least lo.
func intList(s string, lo int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// bench is the state of one benchmark run.
type bench struct {
	c      config
	log    *slog.Logger
	dir    string
	fleet  *testfleet.Fleet
	ca     *devca.CA
	signer *bundle.Signer
	store  *bundle.Store
	state  string
	serial int
	start  time.Time
	sshOpt []string
	// sshOptDefault is sshOpt without the key exchange forced: what
	// users run.
	sshOptDefault []string
	cur           *bundle.Bundle
	// loadStart is the load average when the run started.
	loadStart string
	// clientCfg is the floor's SSH client configuration.
	clientCfg *ssh.ClientConfig
	// lp is the least-privilege setup (-lp), nil without it.
	lp *lpState
}

// sample is one timed run.
type sample struct {
	Size      int     `json:"size"`
	Method    string  `json:"method"`
	Rep       int     `json:"rep"`
	WallMS    float64 `json:"wall_ms"`
	Logins    []int   `json:"-"`
	LoginsMin int     `json:"logins_per_host_min"`
	LoginsMax int     `json:"logins_per_host_max"`
	Conns     int     `json:"connections_per_host_max"`
	ClientCPU float64 `json:"client_cpu_ms"` // user+sys of the client processes
	TotalCPU  float64 `json:"total_cpu_ms"`  // whole machine, from /proc/stat
}

func run(ctx context.Context, c config, log *slog.Logger) (err error) {
	maxN := slices.Max(c.sizes)
	b := &bench{c: c, log: log, start: time.Now(), loadStart: loadavg()}
	if b.dir, err = os.MkdirTemp("", "certpush-bench-"); err != nil {
		return err
	}
	if err := os.Chmod(b.dir, 0o755); err != nil {
		return err
	}
	if !c.keep {
		defer os.RemoveAll(b.dir)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	b.signer = bundle.NewSigner(key)
	b.state = filepath.Join(b.dir, "state")
	b.store = &bundle.Store{Dir: filepath.Join(b.state, "bundles")}
	if b.ca, err = devca.New("certpush bench CA"); err != nil {
		return err
	}
	certnode, err := filepath.Abs(c.certnode)
	if err != nil {
		return err
	}
	log.Info("starting fleet", "hosts", maxN)
	t0 := time.Now()
	b.fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts:      maxN,
		CertName:   certName,
		Domains:    domains,
		Certnode:   certnode,
		Signer:     b.signer,
		TrustedKey: b.signer.PublicKey(),
		Dir:        b.dir,
		NoNginx:    true,
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := b.fleet.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := b.fleet.TrustRoot(b.ca.RootPEM()); err != nil {
		return err
	}
	log.Info("fleet started", "hosts", maxN, "took", time.Since(t0).Round(time.Millisecond))
	if b.clientCfg, err = b.fleet.ClientConfig(); err != nil {
		return err
	}
	b.sshOptDefault = []string{
		"-F", "/dev/null",
		"-i", b.fleet.Identity,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + b.fleet.KnownHosts,
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "LogLevel=ERROR",
	}
	b.sshOpt = append(slices.Clone(b.sshOptDefault), "-o", "KexAlgorithms=curve25519-sha256")
	if err := b.prepare(); err != nil {
		return err
	}
	if c.lpOn {
		err := b.setupLP()
		defer b.closeLP()
		if err != nil {
			return err
		}
	}
	if c.profileDir != "" {
		return b.profile(ctx, maxN)
	}
	if c.rtts != nil {
		samples, err := b.rttRun(ctx)
		if err != nil {
			return err
		}
		return b.rttReport(samples, time.Since(b.start))
	}

	var samples []sample
	methods := []string{mFloor, mPush, mPSSH, mPSSHD, mRsync}
	if c.baseline != "" {
		methods = append(methods, mPushB)
	}
	if c.lpOn {
		methods = append(methods, mFloorLP, mPushLP)
	}
	if c.only != "" {
		methods = slices.DeleteFunc(methods, func(m string) bool { return !slices.Contains(strings.Split(c.only, ","), m) })
	}
	for rep := range c.reps {
		for _, n := range c.sizes {
			// Rotate the order so that no method always runs first.
			order := append(methods[rep%len(methods):], methods[:rep%len(methods)]...)
			for _, m := range order {
				if m == mRsync && n > c.rsyncMax {
					continue
				}
				s, err := b.measure(ctx, m, n, rep)
				if err != nil {
					return fmt.Errorf("%s at %d hosts: %w", m, n, err)
				}
				samples = append(samples, s)
				log.Info("run", "size", n, "method", m, "rep", rep+1, "wall_ms", fmt.Sprintf("%.0f", s.WallMS),
					"ms_per_host", fmt.Sprintf("%.2f", s.WallMS/float64(n)), "logins_per_host", fmt.Sprintf("%d-%d", s.LoginsMin, s.LoginsMax))
				if m == mPush || m == mPushB || m == mPushLP {
					rerun := mRerun
					switch m {
					case mPushB:
						rerun = mRerunB
					case mPushLP:
						rerun = mRerunLP
					}
					s, err := b.measure(ctx, rerun, n, rep)
					if err != nil {
						return fmt.Errorf("%s at %d hosts: %w", rerun, n, err)
					}
					samples = append(samples, s)
					log.Info("run", "size", n, "method", rerun, "rep", rep+1, "wall_ms", fmt.Sprintf("%.0f", s.WallMS),
						"ms_per_host", fmt.Sprintf("%.2f", s.WallMS/float64(n)), "logins_per_host", fmt.Sprintf("%d-%d", s.LoginsMin, s.LoginsMax))
				}
			}
		}
	}
	return b.report(samples, time.Since(b.start))
}

// prepare writes one inventory and one pssh host list per size, and a
// directory of per-port links so that the same remote path names each
// host's own incoming directory for the certificate and certnode config
// (parallel-scp takes one destination for all hosts).
func (b *bench) prepare() error {
	names := make([]string, 0, len(b.fleet.Hosts))
	ports := filepath.Join(b.dir, "ports")
	if err := os.Mkdir(ports, 0o755); err != nil {
		return err
	}
	for _, h := range b.fleet.Hosts {
		names = append(names, h.Name)
		p := strconv.Itoa(h.SSHPort)
		inc := filepath.Join(h.Incoming, certName)
		if err := os.Mkdir(inc, 0o755); err != nil {
			return err
		}
		if err := os.Chown(inc, b.fleet.UID, b.fleet.GID); err != nil {
			return err
		}
		if err := os.Symlink(inc, filepath.Join(ports, p)); err != nil {
			return err
		}
		if err := os.Symlink(h.CertnodeConfig, filepath.Join(ports, p+".yaml")); err != nil {
			return err
		}
	}
	for _, n := range b.c.sizes {
		err := b.fleet.WriteInventory(b.inventory(n), testfleet.InventoryOptions{
			StateDir: b.state,
			Parallel: b.c.parallel,
			Timeout:  120 * time.Second,
			Hosts:    names[:n],
		})
		if err != nil {
			return err
		}
		var list bytes.Buffer
		for _, h := range b.fleet.Hosts[:n] {
			fmt.Fprintf(&list, "%s@127.0.0.1:%d\n", b.fleet.User, h.SSHPort)
		}
		if err := os.WriteFile(b.hostList(n), list.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) inventory(n int) string {
	return filepath.Join(b.dir, fmt.Sprintf("certpush-%d.yaml", n))
}
func (b *bench) hostList(n int) string { return filepath.Join(b.dir, fmt.Sprintf("hosts-%d", n)) }

// newBundle makes a new current bundle, issued after every earlier one.
func (b *bench) newBundle() (*bundle.Bundle, error) {
	b.serial++
	nb := b.start.Add(-4*time.Minute + time.Duration(b.serial)*time.Second)
	iss, err := b.ca.Issue(devca.Leaf{Domains: domains, NotBefore: nb, NotAfter: nb.Add(90 * 24 * time.Hour)})
	if err != nil {
		return nil, err
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		return nil, err
	}
	bd, _, err := b.store.Add(certName, mat, bundle.AddOptions{Domains: domains, Source: bundle.SourceImport, Signer: b.signer, Now: time.Now(), Anchor: bundle.Anchor{Roots: b.ca.Pool()}})
	if err != nil {
		return nil, err
	}
	b.cur = bd
	return bd, nil
}

func (b *bench) measure(ctx context.Context, method string, n, rep int) (sample, error) {
	s := sample{Size: n, Method: method, Rep: rep + 1}
	hosts := b.fleet.Hosts[:n]
	if method != mFloor && method != mFloorLP && method != mRerun && method != mRerunB && method != mRerunLP {
		if _, err := b.newBundle(); err != nil {
			return s, err
		}
	}
	before, err := counts(hosts)
	if err != nil {
		return s, err
	}
	cpu0, err := machineCPU()
	if err != nil {
		return s, err
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru0)
	var self0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self0)
	t0 := time.Now()
	switch method {
	case mFloor:
		err = b.floor(ctx, hosts)
	case mFloorLP:
		err = b.floorLP(hosts)
	case mPush, mRerun, mPushB, mRerunB, mPushLP, mRerunLP:
		err = b.certpush(ctx, n, method)
	case mPSSH:
		err = b.pssh(ctx, n, b.sshOpt)
	case mPSSHD:
		err = b.pssh(ctx, n, b.sshOptDefault)
	case mRsync:
		err = b.rsync(ctx, hosts)
	}
	wall := time.Since(t0)
	if err != nil {
		return s, err
	}
	cpu1, err := machineCPU()
	if err != nil {
		return s, err
	}
	var ru1, self1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru1)
	syscall.Getrusage(syscall.RUSAGE_SELF, &self1)
	s.WallMS = float64(wall.Microseconds()) / 1000
	s.TotalCPU = cpu1 - cpu0
	if method == mFloor || method == mFloorLP {
		s.ClientCPU = rusageMS(self1) - rusageMS(self0)
	} else {
		s.ClientCPU = rusageMS(ru1) - rusageMS(ru0)
	}
	after, err := counts(hosts)
	if err != nil {
		return s, err
	}
	s.LoginsMin, s.LoginsMax = 1<<30, 0
	for i := range hosts {
		l := after[i].logins - before[i].logins
		s.LoginsMin = min(s.LoginsMin, l)
		s.LoginsMax = max(s.LoginsMax, l)
		s.Conns = max(s.Conns, after[i].conns-before[i].conns)
	}
	if method != mFloor && method != mFloorLP {
		if err := b.checkIn(hosts, method); err != nil {
			return s, fmt.Errorf("check: %w", err)
		}
	}
	return s, nil
}

type count struct{ logins, conns int }

// counts reads, for each host, how many public-key logins and TCP
// connections its sshd has logged so far.
func counts(hosts []*testfleet.Host) ([]count, error) {
	out := make([]count, len(hosts))
	for i, h := range hosts {
		data, err := os.ReadFile(h.SSHLog)
		if err != nil {
			return nil, err
		}
		out[i] = count{bytes.Count(data, []byte("Accepted publickey for ")), bytes.Count(data, []byte("Connection from "))}
	}
	return out, nil
}

func rusageMS(r syscall.Rusage) float64 {
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e6
}

// machineCPU returns the busy CPU time of the whole machine in ms.
func machineCPU() (float64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat")
	}
	var busy float64
	for i, v := range f[1:8] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		busy += x
	}
	return busy * 10, nil // USER_HZ = 100
}

// floor opens one SSH connection per host and runs `true`, Parallel at once.
func (b *bench) floor(ctx context.Context, hosts []*testfleet.Host) error {
	sem := make(chan struct{}, b.c.parallel)
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := ssh.Dial("tcp", h.SSHAddr(), b.clientCfg)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				errs[i] = err
				return
			}
			defer sess.Close()
			errs[i] = sess.Run("true")
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// certpush runs `certpush push` and checks every host's result.
func (b *bench) certpush(ctx context.Context, n int, method string) error {
	bin := b.c.certpush
	if method == mPushB || method == mRerunB {
		bin = b.c.baseline
	}
	inv := b.inventory(n)
	if method == mPushLP || method == mRerunLP {
		var err error
		if inv, err = b.lpInventory(n); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, bin, "--config", inv, "push", certName, "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("certpush push: %w: %s", err, tailOf(stderr.String(), 2000))
	}
	var out struct {
		Certs []struct {
			Results []push.Result `json:"results"`
		} `json:"certs"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return fmt.Errorf("certpush output: %w: %s", err, tailOf(stdout.String(), 500))
	}
	want := push.Installed
	if method == mRerun || method == mRerunB || method == mRerunLP {
		want = push.Unchanged
	}
	got := 0
	for _, rep := range out.Certs {
		for _, r := range rep.Results {
			if r.Result != want {
				return fmt.Errorf("host %s: %s, want %s: %s", r.Host, r.Result, want, r.ErrorText)
			}
			got++
		}
	}
	if got != n {
		return fmt.Errorf("%d results, want %d", got, n)
	}
	return nil
}

// rsync copies the bundle to each host in turn with rsync over ssh, then
// runs certnode install over a second ssh connection, both with OpenSSH's
// default key exchange, as such a loop runs.
func (b *bench) rsync(ctx context.Context, hosts []*testfleet.Host) error {
	id := b.cur.Manifest.ID
	src := filepath.Join(b.store.Dir, certName, id) + "/"
	for _, h := range hosts {
		dst := fmt.Sprintf("%s@127.0.0.1:%s/", b.fleet.User, filepath.Join(h.Incoming, certName, id))
		sshArgs := append(slices.Clone(b.sshOptDefault), "-p", strconv.Itoa(h.SSHPort))
		e := "ssh " + strings.Join(sshArgs, " ")
		if out, err := exec.CommandContext(ctx, "rsync", "-a", "--mkpath", "-e", e, src, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("rsync to %s: %w: %s", h.Name, err, out)
		}
		args := append(sshArgs, b.fleet.User+"@127.0.0.1",
			fmt.Sprintf("%s install --json --id %s %s", h.Command, id, certName))
		if out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh install on %s: %w: %s", h.Name, err, out)
		}
	}
	return nil
}

// pssh copies the bundle with parallel-scp and installs it with
// parallel-ssh. The remote path is resolved by the remote shell from the
// port the connection came in on (legacy scp protocol, -O), through the
// per-port links made by prepare.
func (b *bench) pssh(ctx context.Context, n int, opt []string) error {
	id := b.cur.Manifest.ID
	src := filepath.Join(b.store.Dir, certName, id)
	ports := filepath.Join(b.dir, "ports")
	x := strings.Join(opt, " ")
	par := strconv.Itoa(b.c.parallel)
	dst := ports + `/"${SSH_CONNECTION##* }"/`
	if out, err := exec.CommandContext(ctx, "parallel-scp", "-p", par, "-h", b.hostList(n), "-x", "-O "+x, "-t", "120", "-r", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("parallel-scp: %w: %s", err, tailOf(string(out), 2000))
	}
	install := fmt.Sprintf(`%s --config %s/"${SSH_CONNECTION##* }".yaml install --json --id %s %s`, b.fleet.Certnode, ports, id, certName)
	if out, err := exec.CommandContext(ctx, "parallel-ssh", "-p", par, "-h", b.hostList(n), "-x", x, "-t", "120", install).CombinedOutput(); err != nil {
		return fmt.Errorf("parallel-ssh install: %w: %s", err, tailOf(string(out), 2000))
	}
	return nil
}

// check verifies that every host has installed the current bundle: the
// live link names it, and every file has the hash the manifest records and
// the mode certnode gives it (the key 0600, the rest 0644).
func (b *bench) check(hosts []*testfleet.Host) error { return b.checkIn(hosts, mPush) }

// checkIn is check in the certnode root that method installs into.
func (b *bench) checkIn(hosts []*testfleet.Host, method string) error {
	m := b.cur.Manifest
	var errs []error
	for _, h := range hosts {
		root := b.lpRoot(method, h)
		live := filepath.Join(root, "live", certName)
		target, err := os.Readlink(live)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
			continue
		}
		if filepath.Base(target) != m.ID {
			errs = append(errs, fmt.Errorf("%s: live is %s, want %s", h.Name, filepath.Base(target), m.ID))
			continue
		}
		for name, sum := range m.Files {
			p := filepath.Join(live, name)
			fi, err := os.Lstat(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
				continue
			}
			want := fs.FileMode(0o644)
			if name == bundle.KeyFile {
				want = 0o600
			}
			if fi.Mode() != want {
				errs = append(errs, fmt.Errorf("%s: %s mode %v, want %v", h.Name, name, fi.Mode(), want))
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && root != h.Root && st.Uid != 0 {
				errs = append(errs, fmt.Errorf("%s: %s owned by uid %d, want root's", h.Name, name, st.Uid))
			}
			data, err := os.ReadFile(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
				continue
			}
			if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum.SHA256 || int64(len(data)) != sum.Size {
				errs = append(errs, fmt.Errorf("%s: %s hash mismatch", h.Name, name))
			}
		}
		if _, err := os.Stat(filepath.Join(root, "live", certName, bundle.ManifestFile)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		}
		if len(errs) > 10 {
			break
		}
	}
	return errors.Join(errs...)
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// profile writes CPU profiles of an in-process push, an unchanged re-run
// and the floor at n hosts.
func (b *bench) profile(ctx context.Context, n int) error {
	if err := os.MkdirAll(b.c.profileDir, 0o755); err != nil {
		return err
	}
	cfg, err := inventory.Load(b.inventory(n))
	if err != nil {
		return err
	}
	hosts, err := cfg.HostsFor(certName)
	if err != nil {
		return err
	}
	auth, closeAuth, err := push.Auth(cfg.SSH.Identity, "")
	if err != nil {
		return err
	}
	defer closeAuth()
	bd, err := b.newBundle()
	if err != nil {
		return err
	}
	p, err := push.New(bd, push.Options{Auth: auth, KnownHosts: cfg.SSH.KnownHosts, Parallel: b.c.parallel, Timeout: 2 * time.Minute, Install: true})
	if err != nil {
		return err
	}
	prof := func(name string, f func() error) error {
		out, err := os.Create(filepath.Join(b.c.profileDir, name+".pprof"))
		if err != nil {
			return err
		}
		defer out.Close()
		stopPerf := b.perf(filepath.Join(b.c.profileDir, name+".perf"))
		cpu0, _ := machineCPU()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		t0 := time.Now()
		err = f()
		pprof.StopCPUProfile()
		cpu1, _ := machineCPU()
		stopPerf()
		b.log.Info("profiled", "run", name, "hosts", n, "wall", time.Since(t0).Round(time.Millisecond), "machine_cpu_ms", cpu1-cpu0)
		return err
	}
	results := func(rs []push.Result, want string) error {
		for _, r := range rs {
			if r.Result != want {
				return fmt.Errorf("%s: %s: %v", r.Host, r.Result, r.Err)
			}
		}
		return nil
	}
	if err := prof("push", func() error { return results(p.Run(ctx, hosts), push.Installed) }); err != nil {
		return err
	}
	if err := b.check(b.fleet.Hosts[:n]); err != nil {
		return err
	}
	if err := prof("rerun", func() error { return results(p.Run(ctx, hosts), push.Unchanged) }); err != nil {
		return err
	}
	return prof("floor", func() error { return b.floor(ctx, b.fleet.Hosts[:n]) })
}

// perf starts a system-wide `perf record` into out, when perf is
// installed, and returns what stops it.
func (b *bench) perf(out string) func() {
	if _, err := exec.LookPath("perf"); err != nil {
		return func() {}
	}
	cmd := exec.Command("perf", "record", "-a", "-F", "999", "-o", out)
	if err := cmd.Start(); err != nil {
		b.log.Warn("perf", "error", err)
		return func() {}
	}
	for range 100 {
		if fi, err := os.Stat(out); err == nil && fi.Size() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}
