package soak

import (
	"fmt"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/certpush/certpush/internal/testacme"
)

// result is what the run measured.
type result struct {
	Cycles   int
	Wall     time.Duration
	Measured time.Duration
	// ExpiredA lists the expired seconds of hosts that were reachable
	// whenever a renewal was due.
	ExpiredA []string
	// ExpiredOperator lists the expired seconds of a host refused for a
	// new host key, while it waited for the operator's trust.
	ExpiredOperator []string
	// ExpiredB: per fault that left a host unreachable past its
	// certificate's expiry, the seconds served expired after its return.
	ExpiredB []expiredAfterReturn
	Heal     map[*faultRec]time.Duration // -1: never healed in the run
	Hosts    []hostResult
	Syncs    struct {
		Runs, Failed, Killed int
		Longest              time.Duration
	}
}

type expiredAfterReturn struct {
	Fault      *faultRec
	Host, Mode string
	Seconds    int
	Goal       int
}

type hostResult struct {
	Name, Mode            string
	OK, NoAnswer, Expired int
	WorstStale            time.Duration
	Placeholder           int // seconds serving a certificate not issued by the CA (bootstrap)
	series                []point
}

type point struct {
	T         float64 // minutes since the start
	Remaining float64 // seconds; NaN when nothing answered
	Answered  bool
}

// goalAfterReturn is the most seconds a returning host may serve an
// expired certificate: one timer period for a push node (plus 2 s for
// the push itself and the probe's whole seconds), one period more for a
// node whose own timer installs what the push uploads.
func (r *run) goalAfterReturn(mode string) int {
	tick := int(r.p.Tick / time.Second)
	if mode == "pull" {
		// The boot unit installs the current certificate before the
		// web server starts.
		return 0
	}
	if mode == "cron" {
		return 2*tick + 2
	}
	return tick + 2
}

func (r *run) analyze() *result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := &result{Cycles: len(r.history) - 1, Measured: r.stop.Sub(r.start), Heal: map[*faultRec]time.Duration{}}
	for _, s := range r.syncs {
		res.Syncs.Runs++
		if s.Code != 0 {
			res.Syncs.Failed++
		}
		if s.Killed {
			res.Syncs.Killed++
		}
		res.Syncs.Longest = max(res.Syncs.Longest, s.Duration)
	}
	byFP := map[string]int{}
	for i, c := range r.history {
		byFP[c.FP] = i
	}
	at := func(sec int) time.Time { return r.start.Add(time.Duration(sec)*time.Second + 500*time.Millisecond) }
	current := func(t time.Time) int {
		cur := 0
		for i, c := range r.history {
			if !c.Seen.After(t) {
				cur = i
			}
		}
		return cur
	}
	last := int(r.stop.Sub(r.start) / time.Second)
	bCount := map[*faultRec]map[string]int{}
	for _, h := range r.fleet.Hosts {
		hr := hostResult{Name: h.Name, Mode: r.mode[h.Name]}
		// phSince: when the host began serving the placeholder it serves
		// now (a rebuilt node's, until its first push or pull); zero while
		// it serves a certificate of the CA.
		var phSince time.Time
		for sec := 0; sec < last; sec++ {
			s := r.secs[h.Name][sec]
			t := at(sec)
			p := point{T: float64(sec) / 60}
			if s == nil || s.State == stateNoAnswer {
				hr.NoAnswer++
				hr.series = append(hr.series, p)
				continue
			}
			p.Answered, p.Remaining = true, s.Remaining.Seconds()
			hr.series = append(hr.series, p)
			idx, known := byFP[s.FP]
			if !known {
				hr.Placeholder++
				if phSince.IsZero() {
					phSince = t
				}
			} else {
				phSince = time.Time{}
			}
			switch s.State {
			case stateExpired:
				hr.Expired++
				var during *faultRec
				if known {
					for _, f := range r.faults {
						na := r.history[idx].NotAfter
						if f.Host == h.Name && f.Unreachable && !na.Before(f.Start) && !na.After(f.End) && !t.Before(f.End) {
							during = f
						}
					}
				}
				waiting := false
				for _, f := range r.faults {
					if f.Kind == "newkey" && f.Host == h.Name && !t.Before(f.Start) && !t.After(f.End) {
						waiting = true
					}
				}
				if waiting {
					res.ExpiredOperator = append(res.ExpiredOperator, fmt.Sprintf("%s at +%ds", h.Name, sec))
				} else if during != nil {
					if bCount[during] == nil {
						bCount[during] = map[string]int{}
					}
					bCount[during][h.Name]++
				} else {
					res.ExpiredA = append(res.ExpiredA, fmt.Sprintf("%s at +%ds (served %.12s, expired %s)", h.Name, sec, s.FP, s.NotAfter.UTC().Format(time.TimeOnly)))
				}
			default:
				hr.OK++
			}
			cur := current(t)
			switch {
			case !known:
				// Stale since it began serving the placeholder: a current
				// certificate existed already (the first sync made one).
				hr.WorstStale = max(hr.WorstStale, t.Sub(phSince))
			case idx < cur:
				// Stale since the certificate after the one served became
				// current.
				hr.WorstStale = max(hr.WorstStale, t.Sub(r.history[idx+1].Seen))
			}
		}
		res.Hosts = append(res.Hosts, hr)
	}
	for _, f := range r.faults {
		for host, n := range bCount[f] {
			res.ExpiredB = append(res.ExpiredB, expiredAfterReturn{Fault: f, Host: host, Mode: r.mode[host], Seconds: n, Goal: r.goalAfterReturn(r.mode[host])})
		}
		// Healed: every affected host serves the current certificate
		// (one obtained after the fault, for a fault of the CA).
		hosts := []string{f.Host}
		if f.Kind == "storedown" {
			hosts = nil
			for _, h := range r.fleet.Hosts {
				if r.mode[h.Name] == "pull" {
					hosts = append(hosts, h.Name)
				}
			}
		} else if f.Host == "" {
			hosts = nil
			for _, h := range r.fleet.Hosts {
				hosts = append(hosts, h.Name)
			}
		}
		res.Heal[f] = -1
		for sec := int(f.End.Sub(r.start) / time.Second); sec <= last; sec++ {
			cur := r.history[current(at(sec))]
			if f.NeedNew && cur.Seen.Before(f.End) {
				continue
			}
			all := true
			for _, h := range hosts {
				if s := r.secs[h][sec]; s == nil || s.FP != cur.FP || s.State != stateOK {
					all = false
					break
				}
			}
			if all {
				res.Heal[f] = max(0, at(sec).Sub(f.End).Truncate(time.Second))
				break
			}
		}
	}
	return res
}

// check fails the test on what the soak promises.
func (res *result) check(t *testing.T, p params) {
	t.Helper()
	if n := len(res.ExpiredA); n > 0 {
		t.Errorf("%d seconds served expired by hosts reachable whenever renewal was due (goal 0):\n%s", n, strings.Join(res.ExpiredA, "\n"))
	}
	for _, b := range res.ExpiredB {
		if b.Seconds > b.Goal {
			t.Errorf("%s (%s, %s): %d s served expired after its return, goal at most %d s", b.Host, b.Mode, b.Fault.Kind, b.Seconds, b.Goal)
		}
	}
	if want := p.Cycles; res.Cycles < want {
		t.Errorf("%d renewal cycles, want at least %d", res.Cycles, want)
	}
	for f, d := range res.Heal {
		if d < 0 {
			t.Errorf("fault %s %s never healed", f.Kind, f.Host)
		}
	}
}

func writeReport(p params, r *run, res *result) error {
	pngDir := filepath.Join(p.Out, "soak")
	if err := os.MkdirAll(pngDir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	hostname, _ := os.Hostname()
	kernel, _ := exec.Command("uname", "-srm").Output()
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				_, cpu, _ = strings.Cut(line, ":")
				cpu = strings.TrimSpace(cpu)
				break
			}
		}
	}
	version := "short"
	if p.Long {
		version = "long (make soak)"
	}
	now, cron, pull := 0, 0, 0
	for _, m := range r.mode {
		switch m {
		case "cron":
			cron++
		case "pull":
			pull++
		default:
			now++
		}
	}
	fmt.Fprintf(&b, "# Soak: hands-off renewal and distribution, measured\n\n")
	fmt.Fprintf(&b, "Written by the %s run of `test/soak` on %s.\n\n", version, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s, %s, %d CPUs (%s), %s\n", hostname, strings.TrimSpace(string(kernel)), runtime.NumCPU(), cpu, runtime.Version())
	fmt.Fprintf(&b, "- Fleet: %d hosts on loopback (sshd + nginx each): %d `install: now`, %d `install: cron` (node timer: `certnode install` every %s), %d pull nodes (not pushed to; node timer: `certnode pull` every %s; at boot `certnode pull --boot --wait 5m` before nginx starts)\n", p.Hosts, now, cron, p.Tick, pull, p.Tick)
	fmt.Fprintf(&b, "- Store: versitygw %s (S3, posix backend) on loopback; certpush publishes to it (keys age-encrypted to the pull nodes' identities)\n", "v1.8.0")
	renew := "certpush's default threshold for short lifetimes, half the lifetime"
	if p.RenewBefore > 0 {
		renew = fmt.Sprintf("`renew_before: %s`", p.RenewBefore)
	}
	fmt.Fprintf(&b, "- CA: pebble (%s), profile with %s certificates, DNS-01 through challtestsrv; renewal at %s left (%s), so a cycle is %s; the CA's renewal window (ARI) set for each certificate to start there (pebble's own starts a day before issuance, which would make every run renew)\n",
		testacme.DefaultPebble, p.Lifetime, p.threshold(), renew, p.cycle())
	fmt.Fprintf(&b, "- Management: `certpush sync --metrics-file ...` (the production command and a production-style config on disk) every %s, never two at once\n", p.Tick)
	fmt.Fprintf(&b, "- Probe: a TLS handshake with every endpoint 4 times a second; per second the worst state counts\n")
	fmt.Fprintf(&b, "- Load: highest 1-minute load average during the run %.1f on %d CPUs (the machine is shared)\n", r.maxLoad, runtime.NumCPU())
	fmt.Fprintf(&b, "- Run: %s measured, %s wall for the whole test; **%d renewal cycles**; %d sync runs (%d failed, %d killed by a fault, longest %s)\n\n",
		res.Measured.Round(time.Second), res.Wall.Round(time.Second), res.Cycles, res.Syncs.Runs, res.Syncs.Failed, res.Syncs.Killed, res.Syncs.Longest.Round(time.Millisecond))

	fmt.Fprintf(&b, "## Seconds served expired\n\n")
	fmt.Fprintf(&b, "(a) Hosts reachable whenever a renewal was due: **%d s** (goal 0 s).\n", len(res.ExpiredA))
	if len(res.ExpiredOperator) > 0 {
		fmt.Fprintf(&b, "\nA host refused for its new host key, while it waited for the operator's trust: %d s expired (not counted in (a): only the operator can end it).\n", len(res.ExpiredOperator))
	}
	for _, e := range res.ExpiredA {
		fmt.Fprintf(&b, "  - %s\n", e)
	}
	fmt.Fprintf(&b, "\n(b) Hosts that came back after their certificate expired while they were unreachable (goal: one timer period after the return for push nodes, two for `install: cron` nodes, each plus 2 s; 0 s for pull nodes, whose boot unit pulls before nginx starts):\n\n")
	if len(res.ExpiredB) == 0 {
		fmt.Fprintf(&b, "none expired while unreachable.\n")
	} else {
		fmt.Fprintf(&b, "| fault | host | mode | expired after return | goal | |\n|---|---|---|---|---|---|\n")
		for _, e := range res.ExpiredB {
			verdict := "ok"
			if e.Seconds > e.Goal {
				verdict = "**over goal**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d s | %d s | %s |\n", e.Fault.Kind, e.Host, e.Mode, e.Seconds, e.Goal, verdict)
		}
	}
	fmt.Fprintf(&b, "\n## Faults and time to heal\n\nTime to heal: from the end of the fault until every affected host served the current certificate (for the CA: one obtained after the fault), with nobody acting except where noted.\n\n")
	fmt.Fprintf(&b, "| # | fault | host | start | end | time to heal | note |\n|---|---|---|---|---|---|---|\n")
	for i, f := range r.faults {
		heal := "never"
		if d := res.Heal[f]; d >= 0 {
			heal = d.String()
		}
		note := f.Note
		if len(note) > 200 {
			note = note[:200] + "..."
		}
		if f.Err != "" {
			note += " ERROR: " + f.Err
		}
		host := f.Host
		if host == "" {
			host = "all"
		} else {
			host += " (" + r.mode[f.Host] + ")"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | +%s | +%s | %s | %s |\n", i+1, faultText[f.Kind], host,
			f.Start.Sub(r.start).Round(time.Second), f.End.Sub(r.start).Round(time.Second), heal, strings.ReplaceAll(note, "|", "\\|"))
	}
	fmt.Fprintf(&b, "\n## Hosts\n\nWorst staleness: the longest a host served a certificate after a newer one had become current.\n\n")
	fmt.Fprintf(&b, "| host | mode | ok | no answer | expired | placeholder | worst staleness |\n|---|---|---|---|---|---|---|\n")
	for _, h := range res.Hosts {
		fmt.Fprintf(&b, "| %s | %s | %d s | %d s | %d s | %d s | %s |\n", h.Name, h.Mode, h.OK, h.NoAnswer, h.Expired, h.Placeholder, h.WorstStale.Round(time.Second))
	}
	fmt.Fprintf(&b, "\n## Operator actions\n\n")
	if len(r.ops) == 0 {
		fmt.Fprintf(&b, "none.\n")
	}
	for _, o := range r.ops {
		fmt.Fprintf(&b, "- %s\n", o)
	}
	if len(r.notes) > 0 {
		fmt.Fprintf(&b, "\n## Harness notes\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	kinds := map[string]bool{}
	for _, f := range p.Faults {
		kinds[f.Kind] = true
	}
	var missing []string
	for k := range faultText {
		if !kinds[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		fmt.Fprintf(&b, "\n## Not covered\n\n")
		fmt.Fprintf(&b, "- Not in this run's schedule: %s (the long run has them all).\n", strings.Join(missing, ", "))
	}
	fmt.Fprintf(&b, "\n## Timelines\n\nRemaining lifetime of the certificate each host served (gaps: nothing answered; below 0: expired).\n\n")
	for _, h := range res.Hosts {
		name := h.Name + ".png"
		if err := timeline(filepath.Join(pngDir, name), r, h); err != nil {
			return err
		}
		fmt.Fprintf(&b, "![%s](soak/%s)\n", h.Name, name)
	}
	return os.WriteFile(filepath.Join(p.Out, "SOAK.md"), []byte(b.String()), 0o644)
}

// timeline draws one host's served remaining lifetime over the run, the
// faults on it shaded.
func timeline(path string, r *run, h hostResult) error {
	pl := plot.New()
	title := fmt.Sprintf("%s (install: %s)", h.Name, h.Mode)
	for _, f := range r.faults {
		if f.Host == h.Name || f.Host == "" {
			title += fmt.Sprintf(", %s %.1f-%.1f min", f.Kind, f.Start.Sub(r.start).Minutes(), f.End.Sub(r.start).Minutes())
			band, err := plotter.NewPolygon(plotter.XYs{
				{X: f.Start.Sub(r.start).Minutes(), Y: -r.p.Lifetime.Seconds() * 0.2},
				{X: f.End.Sub(r.start).Minutes(), Y: -r.p.Lifetime.Seconds() * 0.2},
				{X: f.End.Sub(r.start).Minutes(), Y: r.p.Lifetime.Seconds()},
				{X: f.Start.Sub(r.start).Minutes(), Y: r.p.Lifetime.Seconds()},
			})
			if err != nil {
				return err
			}
			band.Color = color.NRGBA{R: 255, G: 190, B: 90, A: 90}
			band.LineStyle.Width = 0
			pl.Add(band)
		}
	}
	pl.Title.Text = title
	pl.X.Label.Text = "minutes since start"
	pl.Y.Label.Text = "remaining (s)"
	pl.Y.Min, pl.Y.Max = -r.p.Lifetime.Seconds()*0.2, r.p.Lifetime.Seconds()
	var seg plotter.XYs
	flush := func() error {
		if len(seg) == 0 {
			return nil
		}
		l, err := plotter.NewLine(seg)
		if err != nil {
			return err
		}
		l.Color = color.RGBA{B: 200, A: 255}
		pl.Add(l)
		seg = nil
		return nil
	}
	for _, p := range h.series {
		if !p.Answered {
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		seg = append(seg, plotter.XY{X: p.T, Y: p.Remaining})
	}
	if err := flush(); err != nil {
		return err
	}
	zero, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: r.stop.Sub(r.start).Minutes(), Y: 0}})
	if err != nil {
		return err
	}
	zero.Color = color.RGBA{R: 220, A: 255}
	pl.Add(zero)
	return pl.Save(10*vg.Inch, 2.2*vg.Inch, path)
}
