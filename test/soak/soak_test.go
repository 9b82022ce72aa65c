package soak

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh/knownhosts"
	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/testacme"
	"github.com/certpush/certpush/internal/testfleet"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/certpush/certpush/internal/testnet"
	"github.com/certpush/certpush/internal/teststore"
	"github.com/certpush/certpush/internal/verify"
)

var (
	longFlag     = flag.Bool("soak.long", false, "the long soak (make soak): 20 hosts, 3-minute certificates, every fault, 30+ cycles")
	outFlag      = flag.String("soak.out", "", "directory to write SOAK.md and soak/*.png into (default: the long run writes the repository's top directory, the short one a temporary directory)")
	hostsFlag    = flag.Int("soak.hosts", 0, "number of hosts (0: 20 long, 5 short)")
	lifetimeFlag = flag.Duration("soak.lifetime", 0, "certificate lifetime (0: 3m long, 60s short)")
	tickFlag     = flag.Duration("soak.tick", 0, "period of certpush sync's timer and of the node timers (0: 5s long, 3s short)")
	cyclesFlag   = flag.Int("soak.cycles", 0, "renewal cycles to run (0: 32 long, 5 short)")
	logsFlag     = flag.String("soak.logs", "", "directory to keep the run's logs in (sync.log, node logs, operator.log); default: a new temporary directory when the run is long or fails")
	faultsFlag   = flag.String("soak.faults", "", "fault schedule: long (every fault; needs 16 hosts) or short (default: the run's)")
)

const certName = "example.test"

var domains = []string{"example.test", "*.example.test"}

// params shape one soak run.
type params struct {
	Long     bool
	Hosts    int
	Lifetime time.Duration
	Tick     time.Duration
	Cycles   int
	// RenewBefore is the certificate's renew_before; 0 leaves certpush's
	// default (half the lifetime, for short lifetimes).
	RenewBefore time.Duration
	Out         string
	Logs        string
	Faults      []faultSpec
	// LongFaults: the long run's schedule of every fault.
	LongFaults bool
}

func soakParams(t *testing.T) params {
	p := params{Long: *longFlag || os.Getenv("SOAK_LONG") == "1"}
	if p.Long {
		// 3-minute certificates renewed at half: a cycle of 90 s
		// plus the order's few seconds, so 32 cycles take about 50
		// minutes.
		p.Hosts, p.Lifetime, p.Tick, p.Cycles = 20, 3*time.Minute, 5*time.Second, 32
	} else {
		// Renewal at a third of the lifetime: the short run shares
		// the machine with the rest of make test, so a sync can take
		// many seconds; 40 s of margin, and a cycle of 20 s.
		p.Hosts, p.Lifetime, p.Tick, p.Cycles = 5, 60*time.Second, 3*time.Second, 5
		p.RenewBefore = 40 * time.Second
	}
	if *hostsFlag > 0 {
		p.Hosts = *hostsFlag
	}
	if *lifetimeFlag > 0 {
		p.Lifetime = *lifetimeFlag
	}
	if *tickFlag > 0 {
		p.Tick = *tickFlag
	}
	if *cyclesFlag > 0 {
		p.Cycles = *cyclesFlag
	}
	if *lifetimeFlag > 0 && !p.Long {
		p.RenewBefore = *lifetimeFlag * 2 / 3
	}
	p.Logs = *logsFlag
	p.Out = *outFlag
	if p.Out == "" && p.Long {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			t.Fatal(err)
		}
		p.Out = filepath.Dir(strings.TrimSpace(string(out)))
	}
	if p.Out == "" {
		p.Out = t.TempDir()
	}
	p.LongFaults = p.Long
	switch *faultsFlag {
	case "long":
		p.LongFaults = true
	case "short":
		p.LongFaults = false
	case "":
	default:
		t.Fatalf("-soak.faults %q: long or short", *faultsFlag)
	}
	p.Faults = schedule(p)
	return p
}

// TestSoak is the soak: the short version by default, the long one with
// -soak.long (make soak).
func TestSoak(t *testing.T) {
	testfleet.Require(t, testfleet.SSHD, testfleet.Nginx, testfleet.SFTPServer, testacme.DefaultPebble, testacme.DefaultChallTestSrv, teststore.Binary())
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the soak needs root (tmpfs for the full disk, the fleet account)")
		}
		t.Skip("the soak needs root (tmpfs for the full disk, the fleet account)")
	}
	p := soakParams(t)
	began := time.Now()
	r := setup(t, p)
	r.run()
	res := r.analyze()
	res.Wall = time.Since(began)
	if err := writeReport(p, r, res); err != nil {
		t.Errorf("write the report: %v", err)
	}
	t.Logf("soak: %d hosts, %d cycles, %s wall; report in %s", p.Hosts, res.Cycles, res.Wall.Round(time.Second), filepath.Join(p.Out, "SOAK.md"))
	res.check(t, p)
	r.keepLogs()
}

// keepLogs copies the run's logs out of its temporary directory when
// asked to, for a long run, or when the run failed.
func (r *run) keepLogs() {
	dir := r.p.Logs
	if dir == "" && (r.p.Long || r.t.Failed()) {
		dir = filepath.Join(os.TempDir(), "certpush-soak-logs-"+time.Now().UTC().Format("20060102T150405"))
	}
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.t.Log(err)
		return
	}
	logs, _ := filepath.Glob(filepath.Join(r.dir, "*.log"))
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			os.WriteFile(filepath.Join(dir, filepath.Base(l)), data, 0o600)
		}
	}
	r.t.Logf("soak logs kept in %s", dir)
}

// run is one soak in progress.
type run struct {
	t        *testing.T
	p        params
	ctx      context.Context
	dir      string
	fleet    *testfleet.Fleet
	srv      *testacme.Server
	config   string
	stateDir string
	metrics  string
	env      []string
	certpush string
	store    *bundle.Store
	// mode is each host's install mode: "now", "cron" or "pull" (see
	// modeFor).
	mode map[string]string
	// s3 is the store certpush publishes to and pull nodes pull from.
	s3 *teststore.Server
	// down: hosts that are down (a fault), whose node timer does not run.
	down map[string]bool
	// probeAddr is where the probe (and certpush status) reach each
	// host's nginx; a partitioned host's goes through a relay in its
	// network namespace.
	probeAddr  map[string]string
	nets       map[string]*partitioned
	reloadFlag map[string]string // host -> file whose presence fails the next reload
	start      time.Time
	stop       time.Time
	killed     chan time.Time // when a fault killed certpush

	mu       sync.Mutex
	history  []issued
	secs     map[string]map[int]*second
	syncProc *os.Process
	killNext bool
	syncs    []syncRun
	faults   []*faultRec
	ops      []string
	notes    []string
	maxLoad  float64 // highest 1-minute load average seen
}

// issued is one certificate as the store made it current.
type issued struct {
	FP                  string
	Serial              string
	NotBefore, NotAfter time.Time
	Seen                time.Time // when it became current
}

// threshold is the renew_before in effect for a certificate of the run.
func (p params) threshold() time.Duration {
	if p.RenewBefore > 0 {
		return p.RenewBefore
	}
	return p.Lifetime / 2 // certpush's default for short lifetimes
}

// renewAt is when the threshold makes the certificate due.
func (c issued) renewAt(p params) time.Time { return c.NotAfter.Add(-p.threshold()) }

// cycle is the time between two renewals.
func (p params) cycle() time.Duration { return p.Lifetime - p.threshold() }

type syncRun struct {
	Start    time.Time
	Duration time.Duration
	Code     int
	Killed   bool
}

func setup(t *testing.T, p params) *run {
	r := &run{t: t, p: p, ctx: t.Context(), dir: t.TempDir(), mode: map[string]string{}, probeAddr: map[string]string{},
		nets: map[string]*partitioned{}, reloadFlag: map[string]string{}, secs: map[string]map[int]*second{}, down: map[string]bool{}}
	if err := os.Chmod(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.config = filepath.Join(r.dir, "certpush.yaml")
	r.stateDir = filepath.Join(r.dir, "state")
	r.metrics = filepath.Join(r.dir, "certpush.prom")
	r.store = &bundle.Store{Dir: filepath.Join(r.stateDir, "bundles")}
	bins, err := testfleet.BuildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bins.Remove() })
	r.certpush = bins.Certpush
	signer, err := bundle.LoadOrCreateSigner(r.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, 2*time.Minute)
	defer cancel()
	r.fleet, err = testfleet.Start(ctx, testfleet.Options{
		Hosts: p.Hosts, CertName: certName, Domains: domains, Certnode: bins.Certnode,
		TrustedKey: signer.PublicKey(), Signer: signer, Logger: testlog.AtLevel(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.fleet.Close() })
	r.srv, err = testacme.Start(ctx, testacme.Options{
		HTTPPort: r.fleet.Hosts[0].HTTPPort,
		Profiles: map[string]testacme.Profile{"soak": {Description: "soak", Validity: p.Lifetime}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.srv.Resume(); r.srv.Close() })
	if err := r.srv.RequireModern(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.fleet.TrustRoot(r.srv.Root); err != nil {
		t.Fatal(err)
	}
	// The store, before r.env: teststore puts its credentials in the
	// standard AWS environment variables.
	r.s3 = teststore.Start(t)
	script, err := r.srv.ExecScript(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	r.env = append(os.Environ(), "SSH_AUTH_SOCK=", "EXEC_PATH="+script, "EXEC_SEQUENCE_INTERVAL=0",
		"EXEC_POLLING_INTERVAL=1", "EXEC_PROPAGATION_TIMEOUT=20")

	var pushHosts []string
	for i, h := range r.fleet.Hosts {
		r.probeAddr[h.Name] = h.TLSAddr()
		r.mode[h.Name] = modeFor(i)
		if r.mode[h.Name] != "pull" {
			pushHosts = append(pushHosts, h.Name)
		}
	}
	recipients := r.pullNodes()
	for _, f := range p.Faults {
		switch f.Kind {
		case "partition":
			r.addNetns(f.Host)
		case "reloadfail":
			r.failingReload(f.Host)
		}
	}
	extra := fmt.Sprintf(`acme:
  directory: %s
  email: ops@example.test
  ca_file: %s
  dns_resolvers: [%q]
  disable_propagation_check: true
`, r.srv.DirectoryURL, r.srv.ListenerCAFile, r.srv.DNSAddr)
	cert := map[string]any{"challenge": map[string]any{"type": "dns-01", "provider": "exec"}, "profile": "soak"}
	if p.RenewBefore > 0 {
		cert["renew_before"] = p.RenewBefore.String()
	}
	sc := r.s3.Config("fleet")
	extra += fmt.Sprintf("store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  recipients: [%s]\n",
		sc.URL, sc.Endpoint, strings.Join(recipients, ", "))
	err = r.fleet.WriteInventory(r.config, testfleet.InventoryOptions{
		StateDir: r.stateDir, Parallel: 32, Timeout: 15 * time.Second, Extra: extra, Cert: cert, Hosts: pushHosts,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.patchInventory()

	// The first certificate, as an operator's first sync does it.
	if code := r.syncOnce(); code != 0 {
		t.Fatalf("first sync exited %d; log in %s", code, filepath.Join(r.dir, "sync.log"))
	}
	for _, h := range r.fleet.Hosts {
		r.nodeJob(h)
	}
	r.watchStore()
	return r
}

// partitioned is a host that a partition fault cuts off: its sshd and
// nginx are reached only through relays inside a network namespace,
// whose link the fault takes down.
type partitioned struct {
	ns       *testnet.Netns
	ssh, tls *testnet.Proxy
}

// addNetns puts a host's sshd and nginx behind relays in a new network
// namespace; certpush, its known_hosts and the probe reach the host
// there.
func (r *run) addNetns(name string) {
	if why := testnet.Available(); why != "" {
		r.t.Fatalf("the partition fault needs a network namespace: %s", why)
	}
	h := r.fleet.Host(name)
	ns, err := testnet.NewNetns()
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ns.Close() })
	sp, err := ns.Relay(h.SSHAddr())
	if err != nil {
		r.t.Fatal(err)
	}
	tp, err := ns.Relay(h.TLSAddr())
	if err != nil {
		r.t.Fatal(err)
	}
	r.nets[name] = &partitioned{ns: ns, ssh: sp, tls: tp}
	r.probeAddr[name] = tp.Addr
	line := knownhosts.Line([]string{knownhosts.Normalize(sp.Addr)}, h.HostKey)
	f, err := os.OpenFile(r.fleet.KnownHosts, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		r.t.Fatal(err)
	}
}

// failingReload makes the host's reload fail once whenever a flag file
// exists (and remove it), else reload nginx.
func (r *run) failingReload(name string) {
	h := r.fleet.Host(name)
	flagFile := filepath.Join(h.NginxPrefix, "fail-next-reload")
	script := filepath.Join(h.Dir, "reload.sh")
	body := fmt.Sprintf("#!/bin/sh\nif [ -e %s ]; then rm -f %s; echo 'reload refused (soak fault)' >&2; exit 1; fi\nexec %s\n",
		flagFile, flagFile, strings.Join(h.NginxReload, " "))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		r.t.Fatal(err)
	}
	var c map[string]any
	data, err := os.ReadFile(h.CertnodeConfig)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		r.t.Fatal(err)
	}
	c["defaults"].(map[string]any)["reload"] = []string{script}
	if data, err = yaml.Marshal(c); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(h.CertnodeConfig, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.reloadFlag[name] = flagFile
}

func (r *run) patchInventory() {
	data, err := os.ReadFile(r.config)
	if err != nil {
		r.t.Fatal(err)
	}
	var inv map[string]any
	if err := yaml.Unmarshal(data, &inv); err != nil {
		r.t.Fatal(err)
	}
	hosts := inv["hosts"].(map[string]any)
	for name, mode := range r.mode {
		if mode == "pull" {
			// Not pushed to: it pulls from the store.
			delete(hosts, name)
			continue
		}
		hosts[name].(map[string]any)["install"] = mode
	}
	for name, pn := range r.nets {
		_, port, _ := net.SplitHostPort(pn.ssh.Addr)
		n, _ := strconv.Atoi(port)
		hosts[name].(map[string]any)["address"] = pn.ns.NsAddr
		hosts[name].(map[string]any)["port"] = n
		hosts[name].(map[string]any)["verify"] = []string{pn.tls.Addr}
	}
	if data, err = yaml.Marshal(inv); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(r.config, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// appendLog appends a block to one of the run's logs.
func (r *run) appendLog(name, header string, out []byte) {
	f, err := os.OpenFile(filepath.Join(r.dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		r.t.Log(err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "=== %s %s\n%s", time.Now().UTC().Format(time.RFC3339Nano), header, out)
}

// syncOnce runs the production timer's command once.
func (r *run) syncOnce() int {
	cmd := exec.Command(r.certpush, "--config", r.config, "sync", "--metrics-file", r.metrics)
	cmd.Env = r.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.syncProc = cmd.Process
	r.mu.Unlock()
	err := cmd.Wait()
	r.mu.Lock()
	r.syncProc = nil
	code := exitCode(err)
	sr := syncRun{Start: start, Duration: time.Since(start), Code: code}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sr.Killed = true
	}
	r.syncs = append(r.syncs, sr)
	r.mu.Unlock()
	r.appendLog("sync.log", fmt.Sprintf("certpush sync -> %d (%s)", code, sr.Duration.Round(time.Millisecond)), out.Bytes())
	return code
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// modeFor gives host i (from 0) its install mode: every third host
// pulls from the store (certnode pull), every second of the others
// installs by its own timer (install: cron), the rest at once.
func modeFor(i int) string {
	switch {
	case i%3 == 2:
		return "pull"
	case i%2 == 1:
		return "cron"
	}
	return "now"
}

// pullNodes gives every pull node an age identity (0600, the fleet
// account's) and a store section in its certnode.yaml, as
// docs/pull-mode.md configures a node, and returns their recipients.
func (r *run) pullNodes() []string {
	var recipients []string
	sc := r.s3.Config("fleet")
	for _, h := range r.fleet.Hosts {
		if r.mode[h.Name] != "pull" {
			continue
		}
		id, err := age.GenerateX25519Identity()
		if err != nil {
			r.t.Fatal(err)
		}
		path := filepath.Join(h.Dir, "identity.age")
		if err := os.WriteFile(path, []byte(id.String()+"\n"), 0o600); err != nil {
			r.t.Fatal(err)
		}
		if err := os.Chown(path, r.fleet.UID, r.fleet.GID); err != nil {
			r.t.Fatal(err)
		}
		recipients = append(recipients, id.Recipient().String())
		f, err := os.OpenFile(h.CertnodeConfig, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			r.t.Fatal(err)
		}
		_, err = fmt.Fprintf(f, "store:\n  url: %s\n  endpoint: %s\n  region: us-east-1\n  path_style: true\n  identity: %s\n  node_id: %s\n",
			sc.URL, sc.Endpoint, path, h.Name)
		if err := errors.Join(err, f.Close()); err != nil {
			r.t.Fatal(err)
		}
	}
	return recipients
}

// nodeJob runs a host's node timer command once, as the fleet user:
// certnode install for install: cron hosts, certnode pull for pull
// nodes (certnode-pull.timer's command); nothing for install: now, or
// while the host is down.
func (r *run) nodeJob(h *testfleet.Host) {
	mode := r.mode[h.Name]
	r.mu.Lock()
	down := r.down[h.Name]
	r.mu.Unlock()
	if mode == "now" || down {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, time.Minute)
	defer cancel()
	cmd := "install"
	if mode == "pull" {
		cmd = "pull"
	}
	out, code := r.certnode(ctx, h, cmd)
	if code != 0 || r.p.Long {
		r.appendLog("node-"+h.Name+".log", fmt.Sprintf("certnode %s -> %d", cmd, code), out)
	}
}

// bootPull is a pull node's boot unit (certnode-pull-boot.service),
// which runs before its web server starts.
func (r *run) bootPull(ctx context.Context, h *testfleet.Host) error {
	out, code := r.certnode(ctx, h, "pull", "--boot", "--wait", "5m")
	r.appendLog("node-"+h.Name+".log", fmt.Sprintf("certnode pull --boot --wait 5m -> %d", code), out)
	if code != 0 {
		return fmt.Errorf("certnode pull --boot exited %d: %s", code, out)
	}
	return nil
}

func (r *run) certnode(ctx context.Context, h *testfleet.Host, args ...string) ([]byte, int) {
	cmd := exec.CommandContext(ctx, r.fleet.Certnode, append([]string{"--config", h.CertnodeConfig}, args...)...)
	cmd.Dir = "/"
	// The pull nodes' credentials, as /etc/certnode/env gives them.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + h.Dir,
		"AWS_ACCESS_KEY_ID=" + teststore.AccessKey, "AWS_SECRET_ACCESS_KEY=" + teststore.SecretKey,
		"AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.fleet.UID), Gid: uint32(r.fleet.GID)}}
	out, err := cmd.CombinedOutput()
	return out, exitCode(err)
}

// timer runs job every period (from the start of one run to the start of
// the next, never two at once, as a systemd timer) until ctx is done.
func timer(ctx context.Context, period time.Duration, job func()) {
	for {
		start := time.Now()
		job()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(period))):
		}
	}
}

// current returns the certificate the store has made current, and
// records it the first time it is seen.
func (r *run) watchStore() {
	b, err := r.store.Current(certName)
	if err != nil {
		r.t.Fatal(err)
	}
	r.see(b)
}

func (r *run) see(b *bundle.Bundle) {
	r.mu.Lock()
	if n := len(r.history); n > 0 && r.history[n-1].FP == b.Manifest.Fingerprint {
		r.mu.Unlock()
		return
	}
	leaf, err := b.Leaf()
	if err != nil {
		r.mu.Unlock()
		r.t.Errorf("current bundle: %v", err)
		return
	}
	c := issued{FP: b.Manifest.Fingerprint, Serial: leaf.SerialNumber.Text(16), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Seen: time.Now()}
	r.history = append(r.history, c)
	kill := r.killNext && r.syncProc != nil
	if kill {
		r.killNext = false
		if err := r.syncProc.Kill(); err != nil {
			r.notes = append(r.notes, "kill certpush: "+err.Error())
		}
	}
	r.mu.Unlock()
	if kill {
		r.killed <- time.Now()
	}
	// The CA's renewal window, as a CA with short certificates would
	// suggest it (pebble's own starts a day before any certificate of a
	// few minutes is issued, which makes every run renew): from the
	// threshold on, for a tenth of the lifetime.
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if err := r.srv.SetRenewalInfo(ctx, leaf, c.renewAt(r.p), c.renewAt(r.p).Add(r.p.Lifetime/10)); err != nil {
		r.mu.Lock()
		r.notes = append(r.notes, fmt.Sprintf("%s: set the CA's renewal window of %s: %v", time.Now().UTC().Format(time.TimeOnly), c.Serial, err))
		r.mu.Unlock()
	}
}

// run starts the timers, the probe and the faults, waits for the
// cycles, and stops everything it started.
func (r *run) run() {
	ctx, cancel := context.WithCancel(r.ctx)
	var wg sync.WaitGroup
	r.start = time.Now()
	r.killed = make(chan time.Time, 1)
	wg.Go(func() { timer(ctx, r.p.Tick, func() { r.syncOnce() }) })
	for _, h := range r.fleet.Hosts {
		if r.mode[h.Name] != "now" {
			wg.Go(func() { timer(ctx, r.p.Tick, func() { r.nodeJob(h) }) })
		}
		wg.Go(func() { r.probe(ctx, h.Name) })
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			if b, err := r.store.Current(certName); err == nil {
				r.see(b)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			if data, err := os.ReadFile("/proc/loadavg"); err == nil {
				if f := strings.Fields(string(data)); len(f) > 0 {
					if v, err := strconv.ParseFloat(f[0], 64); err == nil {
						r.mu.Lock()
						r.maxLoad = max(r.maxLoad, v)
						r.mu.Unlock()
					}
				}
			}
			sleepCtx(ctx, 5*time.Second)
		}
	})
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		r.runFaults(ctx)
	}()
	// The cycles: renewals after the first certificate. A cycle is the
	// threshold's interval plus the time an order takes; the deadline
	// allows a minute more per cycle.
	deadline := r.start.Add(time.Duration(r.p.Cycles) * (r.p.cycle() + time.Minute))
	for r.ctx.Err() == nil && time.Now().Before(deadline) && r.cycles() < r.p.Cycles {
		sleepCtx(r.ctx, time.Second)
	}
	<-faultsDone
	// Let the last fault heal before stopping: at most one lifetime.
	r.waitAligned(r.p.Lifetime)
	r.stop = time.Now()
	cancel()
	wg.Wait()
}

func (r *run) cycles() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.history) - 1
}

// waitAligned waits until every host serves the current certificate, at
// most d.
func (r *run) waitAligned(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r.aligned() {
			return
		}
		time.Sleep(time.Second)
	}
}

func (r *run) aligned() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.history) == 0 {
		return false
	}
	cur := r.history[len(r.history)-1].FP
	sec := int(time.Since(r.start)/time.Second) - 1
	for _, h := range r.fleet.Hosts {
		s := r.secs[h.Name][sec]
		if s == nil || s.FP != cur {
			return false
		}
	}
	return true
}

// probe makes a TLS handshake with the host's endpoint four times a
// second and keeps, per second, the worst state seen.
func (r *run) probe(ctx context.Context, name string) {
	sni := verify.DefaultSNI(domains)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		s := &second{State: stateNoAnswer}
		served, err := verify.Probe(ctx, r.probeAddr[name], sni, 2*time.Second)
		if err == nil {
			s.FP = served.Fingerprint
			s.NotAfter = served.Leaf.NotAfter
			s.Remaining = served.Leaf.NotAfter.Sub(now)
			switch {
			case !now.Before(served.Leaf.NotAfter):
				s.State = stateExpired
			case now.Before(served.Leaf.NotBefore):
				s.State = stateNotYet
			default:
				s.State = stateOK
			}
		}
		r.record(name, int(now.Sub(r.start)/time.Second), s)
	}
}

// States of a second, worst last.
const (
	stateOK       = "ok"
	stateNoAnswer = "no answer"
	stateNotYet   = "not yet valid"
	stateExpired  = "expired"
)

var severity = map[string]int{stateOK: 0, stateNoAnswer: 1, stateNotYet: 2, stateExpired: 3}

// second is what one endpoint served in one second: the worst state and
// the certificate of that sample.
type second struct {
	State     string
	FP        string
	NotAfter  time.Time
	Remaining time.Duration
}

func (r *run) record(name string, sec int, s *second) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.secs[name]
	if m == nil {
		m = map[int]*second{}
		r.secs[name] = m
	}
	if old := m[sec]; old == nil || severity[s.State] > severity[old.State] {
		m[sec] = s
	}
}
