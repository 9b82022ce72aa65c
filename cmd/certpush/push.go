package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
)

// pushFlags are the flags shared by the commands that push.
type pushFlags struct {
	hosts    string
	dryRun   bool
	parallel int
	canary   int
	force    bool
	json     bool
	quiet    bool
	metrics  string
	maxFail  int
	fromWave int
	// emergency: every host at once, no canaries, waves, pauses or
	// failure limit.
	emergency bool
	lock      lockFlags
}

func (p *pushFlags) register(fs *flag.FlagSet) {
	p.lock.register(fs)

	fs.StringVar(&p.hosts, "hosts", "", "push only to these hosts (comma-separated names)")
	fs.BoolVar(&p.dryRun, "dry-run", false, "show which hosts need the bundle; change nothing")
	fs.IntVar(&p.parallel, "parallel", 0, "hosts in flight at once (default: ssh.parallel)")
	fs.IntVar(&p.canary, "canary", 0, "push to the first `N` hosts first (default: the config's canary hosts); stop if any fails")
	fs.IntVar(&p.fromWave, "from-wave", 0, "start at wave `N` of the certificates' waves: (resume after a fix; earlier waves are left alone)")
	fs.IntVar(&p.maxFail, "max-failures", 0, "after the canaries, stop starting hosts once more than `N` failed (0: no limit)")
	fs.BoolVar(&p.force, "force", false, "push and install even where a host has the bundle (hosts behind the shipped forced command refuse it)")
	fs.BoolVar(&p.json, "json", false, "print results as JSON")
	fs.BoolVar(&p.quiet, "quiet", false, "print nothing but failures")
	fs.BoolVar(&p.emergency, "emergency", false, "incident rollout: every host at once at full parallelism, no canary wave or failure limit; same verification")
	fs.StringVar(&p.metrics, "metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
}

// pushing gives c the push flags, filled in pf, and a Run that applies
// --json and --quiet before it calls run.
func (e *env) pushing(c *cli.Command, pf *pushFlags, run func(context.Context, []string) error) *cli.Command {
	pf.register(&c.Flags)
	c.Run = func(ctx context.Context, args []string) error {
		e.quietly(*pf)
		return run(ctx, args)
	}
	return c
}

func (e *env) pushCommand() *cli.Command {
	var pf pushFlags
	return e.pushing(&cli.Command{
		Name:  "push",
		Args:  "[NAME...]",
		Short: "push the current bundle of each certificate to its hosts",
		Long:  "Push the current bundle of each named certificate (default: all) to its hosts.\nExit 1 if any host failed.",
	}, &pf, func(ctx context.Context, names []string) error {
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		if len(names) == 0 {
			names = cfg.CertOrder
		}
		return e.pushNames(ctx, cfg, names, pf)
	})
}

// pushNames pushes the current bundle of each named certificate, then
// records, writes metrics and prints as finishPush does.
func (e *env) pushNames(ctx context.Context, cfg *inventory.Config, names []string, pf pushFlags) error {
	if err := checkHosts(cfg, names, pf); err != nil {
		return err
	}
	var reports []certReport
	for _, name := range names {
		rep, err := e.pushCert(ctx, cfg, name, pf)
		if err != nil {
			return err
		}
		reports = append(reports, rep)
	}
	return e.finishPush(cfg, reports, pf)
}

// finishPush records the results, writes metrics and prints the report.
func (e *env) finishPush(cfg *inventory.Config, reports []certReport, pf pushFlags) error {
	if pf.hosts != "" {
		// Certificates with none of the named hosts were not pushed.
		reports = slices.DeleteFunc(reports, func(r certReport) bool { return r.Results == nil })
	}
	if !pf.dryRun {
		st, err := loadFleetState(cfg.StateDir)
		if err != nil {
			e.log.Warn("read host state", "error", err)
			st = fleetState{}
		}
		bundles := map[string]*bundle.Bundle{}
		for _, rep := range reports {
			bundles[rep.Cert] = rep.bundle
			if err := st.record(cfg.StateDir, rep, time.Now()); err != nil {
				e.log.Warn("write host state", "error", err)
			}
		}
		if err := pushMetrics(st, reports, bundles).WriteIfSet(pf.metrics); err != nil {
			return err
		}
	}
	return e.printReports(reports, pf)
}

// certReport is what a push of one certificate did.
type certReport struct {
	Cert     string        `json:"cert"`
	BundleID string        `json:"bundle_id"`
	Message  string        `json:"message,omitempty"`
	Results  []push.Result `json:"results"`
	// RenewalDue is when the certificate is next due for renewal (renew
	// and sync, ACME certificates).
	RenewalDue *time.Time `json:"renewal_due,omitempty"`
	bundle     *bundle.Bundle
}

func (e *env) store(cfg *inventory.Config) *bundle.Store {
	return &bundle.Store{Dir: filepath.Join(cfg.StateDir, "bundles")}
}

// pushCert pushes the current bundle of name to its hosts: canary hosts
// first, and the rest only when every canary succeeded.
func (e *env) pushCert(ctx context.Context, cfg *inventory.Config, name string, pf pushFlags) (certReport, error) {
	rep := certReport{Cert: name}
	cert, err := cfg.Cert(name)
	if err != nil {
		return rep, cli.Usage(err)
	}
	b, err := e.store(cfg).Current(name)
	if errors.Is(err, bundle.ErrNoBundle) {
		return rep, cli.Usagef("%s has no bundle yet: run 'certpush obtain %s' or 'certpush import %s --cert F --key F'", name, name, name)
	}
	if err != nil {
		return rep, err
	}
	if !pf.dryRun {
		// A rotation's new key signs what it has not signed yet (after
		// an interrupted key rotate, or a bundle made elsewhere).
		if signer, err := bundle.LoadSigner(cfg.StateDir); err == nil {
			if b, _, err = e.store(cfg).Resign(name, signer); err != nil {
				return rep, err
			}
		} else if !errors.Is(err, bundle.ErrNoSigningKey) {
			return rep, err
		}
	}
	rep.BundleID = b.Manifest.ID
	rep.bundle = b
	waves, err := e.rollout(cfg, cert, pf)
	if err != nil {
		return rep, err
	}
	if pf.hosts != "" {
		want := hostList(pf.hosts)
		n := 0
		for i := range waves {
			waves[i].Hosts = slices.DeleteFunc(waves[i].Hosts, func(h inventory.Host) bool { return !want[h.Name] })
			n += len(waves[i].Hosts)
		}
		if n == 0 {
			return rep, nil
		}
	}
	// Counted, not copied: a fleet may have 100,000 hosts.
	total, anySSH := 0, false
	for _, w := range waves {
		total += len(w.Hosts)
		anySSH = anySSH || hasSSH(w.Hosts)
	}
	if pf.emergency {
		pf.parallel = max(total, 1)
		pf.maxFail = 0
		e.note("%s: emergency push: all %d hosts at once", name, total)
	}
	p, closeAuth, err := e.pusher(cfg, cert, b, pf, anySSH)
	if err != nil {
		return rep, err
	}
	defer closeAuth()
	e.log.Info("pushing", "cert", name, "bundle", b.Manifest.ID, "hosts", total, "waves", len(waves), "from_wave", pf.fromWave, "dry_run", pf.dryRun, "emergency", pf.emergency)
	var results []push.Result
	var done []inventory.Host // hosts of the finished waves, when a pause watches them
	doneN := 0
	stopped := "" // why the rollout stopped, "" while it goes on
	for i, w := range waves {
		if stopped != "" {
			for _, h := range w.Hosts {
				results = append(results, push.Result{Host: h.Name, Address: h.Location(), Wave: w.Name, Result: push.Skipped, BundleID: b.Manifest.ID, Detail: stopped})
			}
			continue
		}
		rs := wave(w.Name, p.Run(ctx, w.Hosts))
		if results == nil {
			results = rs
		} else {
			results = append(results, rs...)
		}
		doneN += len(w.Hosts)
		if cert.Pause > 0 && !pf.dryRun {
			done = append(done, w.Hosts...)
		}
		if ctx.Err() != nil {
			stopped = "rollout interrupted"
			continue
		}
		last := i == len(waves)-1
		if failed := countFailed(rs); failed > 0 && !pf.dryRun {
			untouched := total - doneN
			if w.Name == "canary" {
				stopped = "canary failed"
				rep.Message = fmt.Sprintf("%d of %d canary hosts failed: rollout stopped, %d hosts untouched", failed, len(w.Hosts), untouched)
			} else {
				stopped = "wave " + w.Name + " failed"
				rep.Message = fmt.Sprintf("wave %s: %d of %d hosts failed: rollout stopped, %d hosts untouched%s", w.Name, failed, len(w.Hosts), untouched, resumeHint(cert, w.Name))
			}
			continue
		}
		if cert.Pause > 0 && !last && !pf.dryRun {
			e.log.Info("pause after wave", "cert", name, "wave", w.Name, "pause", cert.Pause)
			if err := p.Watch(ctx, done, cert.Pause, pauseInterval(cert.Pause)); err != nil {
				stopped = "check during the pause failed"
				if ctx.Err() != nil {
					stopped = "rollout interrupted"
				}
				rep.Message = fmt.Sprintf("after wave %s: %v: rollout stopped, %d hosts untouched", w.Name, err, total-doneN)
			}
		}
	}
	if ctx.Err() != nil {
		rep.Message = "interrupted: no new hosts were started; hosts under way finished"
	}
	rep.Results = results
	e.progressDone()
	if !pf.dryRun {
		if err := appendDeployLog(cfg.StateDir, name, results, time.Now()); err != nil {
			e.log.Warn("write deploy log", "error", err)
		}
	}
	return rep, nil
}

// rollout returns the waves of cert: with --emergency one wave of every
// host; those of its waves: (from
// --from-wave on), or with --canary N its first N hosts then the rest,
// or its canary hosts then the rest.
func (e *env) rollout(cfg *inventory.Config, cert *inventory.Cert, pf pushFlags) ([]inventory.Wave, error) {
	if pf.emergency {
		if pf.fromWave > 0 || pf.canary > 0 {
			return nil, cli.Usagef("--emergency pushes to every host at once: it takes no --from-wave or --canary")
		}
		hosts, err := cfg.HostsFor(cert.Name)
		if err != nil {
			return nil, cli.Usage(err)
		}
		return []inventory.Wave{{Name: "emergency", Hosts: hosts}}, nil
	}
	if pf.fromWave > 0 && len(cert.Waves) == 0 {
		return nil, cli.Usagef("--from-wave: %s has no waves: configured", cert.Name)
	}
	if pf.canary > 0 && len(cert.Waves) > 0 {
		return nil, cli.Usagef("--canary: %s has waves: configured; use --from-wave to resume", cert.Name)
	}
	if pf.canary > 0 {
		hosts, err := cfg.HostsFor(cert.Name)
		if err != nil {
			return nil, cli.Usage(err)
		}
		n := min(pf.canary, len(hosts))
		return []inventory.Wave{{Name: "canary", Hosts: hosts[:n]}, {Name: "rest", Hosts: hosts[n:]}}, nil
	}
	waves, err := cfg.Waves(cert.Name)
	if err != nil {
		return nil, cli.Usage(err)
	}
	if pf.fromWave > 0 {
		if pf.fromWave > len(waves) {
			return nil, cli.Usagef("--from-wave %d: %s has %d waves", pf.fromWave, cert.Name, len(waves))
		}
		waves = waves[pf.fromWave-1:]
	}
	return waves, nil
}

// resumeHint tells how to go on after wave name of cert failed.
func resumeHint(cert *inventory.Cert, name string) string {
	if len(cert.Waves) == 0 {
		return ""
	}
	return fmt.Sprintf("; after the fix: certpush push --from-wave %s %s", name, cert.Name)
}

// pauseInterval is how often a pause between waves checks the finished
// waves: five times over the pause, at least every 5s, at most every
// 200ms.
func pauseInterval(pause time.Duration) time.Duration {
	return min(max(pause/5, 200*time.Millisecond), 5*time.Second)
}

// dialTCP, when set, replaces the TCP dial to SSH hosts (push.Options.DialTCP).
// Only tests and benchmarks set it; in certpush it is nil.
var dialTCP func(ctx context.Context, addr string) (net.Conn, error)

// pusher makes the pusher of bundle b for cert with the config's SSH
// settings and the flags; closeAuth releases the SSH agent, if any.
func (e *env) pusher(cfg *inventory.Config, cert *inventory.Cert, b *bundle.Bundle, pf pushFlags, needSSH bool) (p *push.Pusher, closeAuth func(), err error) {
	auth, closeAuth, err := push.Auth(cfg.SSH.Identity, e.getenv("SSH_AUTH_SOCK"))
	if err != nil && needSSH {
		return nil, nil, cli.Usage(err)
	}
	if err != nil {
		// Only exec targets: no SSH credentials needed.
		auth, closeAuth = nil, func() {}
	}
	parallel := cfg.SSH.Parallel
	if pf.parallel > 0 {
		parallel = pf.parallel
	}
	p, err = push.New(b, push.Options{
		Auth:           auth,
		KnownHosts:     cfg.SSH.KnownHosts,
		Parallel:       parallel,
		Timeout:        cfg.SSH.Timeout,
		ConnectTimeout: cfg.SSH.ConnectTimeout,
		Install:        cert.Install == inventory.InstallNow,
		SNI:            cert.SNI(),
		Force:          pf.force,
		DryRun:         pf.dryRun,
		Logger:         e.log.With("cert", cert.Name),
		Progress:       e.progress(cert.Name),
		MaxFailures:    pf.maxFail,
		ExecOnly:       !needSSH,
		DialTCP:        dialTCP,
	})
	if err != nil {
		closeAuth()
		return nil, nil, cli.Usage(err)
	}
	return p, closeAuth, nil
}

// hasSSH reports whether any of hosts is an SSH host (not an exec target).
func hasSSH(hosts []inventory.Host) bool {
	for _, h := range hosts {
		if !h.IsExec() {
			return true
		}
	}
	return false
}

func wave(name string, rs []push.Result) []push.Result {
	for i := range rs {
		rs[i].Wave = name
	}
	return rs
}

// hostList splits the value of --hosts.
func hostList(list string) map[string]bool {
	want := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		if n = strings.TrimSpace(n); n != "" {
			want[n] = true
		}
	}
	return want
}

// checkHosts refuses a --hosts list that names a host of none of the
// certificates names, so that a typo never reads as "nothing to do".
func checkHosts(cfg *inventory.Config, names []string, pf pushFlags) error {
	if pf.hosts == "" {
		return nil
	}
	want := hostList(pf.hosts)
	for _, name := range names {
		hosts, err := cfg.HostsFor(name)
		if err != nil {
			return cli.Usage(err)
		}
		for _, h := range hosts {
			delete(want, h.Name)
		}
	}
	if len(want) == 0 {
		return nil
	}
	missing := make([]string, 0, len(want))
	for n := range want {
		missing = append(missing, n)
	}
	sort.Strings(missing)
	return cli.Usagef("--hosts: %s: not a host of %s", strings.Join(missing, ", "), strings.Join(names, ", "))
}

func countFailed(rs []push.Result) int {
	n := 0
	for _, r := range rs {
		if !r.OK() {
			n++
		}
	}
	return n
}

// printReports prints the per-host table (or JSON) and returns cli.ErrReported
// when any host failed.
func (e *env) printReports(reports []certReport, pf pushFlags) error {
	asJSON := pf.json
	failed, skipped := 0, 0
	for _, rep := range reports {
		for _, r := range rep.Results {
			switch r.Result {
			case push.Failed:
				failed++
			case push.Skipped:
				skipped++
			}
		}
	}
	if asJSON {
		if err := writeReportsJSON(e.stdout, reports); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !pf.quiet || failed+skipped > 0 {
			fmt.Fprintln(tw, "CERT\tWAVE\tHOST\tRESULT\tDURATION\tDETAIL")
		}
		for _, rep := range reports {
			for _, r := range rep.Results {
				if pf.quiet && r.OK() {
					continue
				}
				detail := r.Detail
				if r.Err != nil {
					detail = r.Err.Error()
				}
				detail = strings.Join(strings.Fields(detail), " ")
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", rep.Cert, r.Wave, r.Host, r.Result, r.Duration.Round(time.Millisecond), detail)
			}
		}
		tw.Flush()
		for _, rep := range reports {
			if rep.Message != "" {
				fmt.Fprintf(e.stderr, "certpush: %s: %s\n", rep.Cert, rep.Message)
			}
		}
	}
	if failed+skipped > 0 {
		msg := fmt.Sprintf("%d hosts failed", failed)
		if skipped > 0 {
			msg += fmt.Sprintf(", %d skipped", skipped)
		}
		fmt.Fprintf(e.stderr, "certpush: %s\n", msg)
		return cli.ErrReported
	}
	return nil
}

// deployRecord is one line of <state_dir>/deploy.log.
type deployRecord struct {
	Time       time.Time `json:"time"`
	Cert       string    `json:"cert"`
	BundleID   string    `json:"bundle_id"`
	Host       string    `json:"host"`
	Result     string    `json:"result"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
}

// appendDeployLog appends one JSON line per host to the deploy log, so
// that "what did host X get, and when" has an answer.
func appendDeployLog(stateDir, cert string, results []push.Result, now time.Time) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range results {
		line, err := json.Marshal(deployRecord{Time: now.UTC(), Cert: cert, BundleID: r.BundleID, Host: r.Host, Result: r.Result, DurationMS: r.Duration.Milliseconds(), Error: r.ErrorText})
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "deploy.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
