package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/report"
	"github.com/certpush/certpush/internal/verify"
)

func (e *env) statusCommand() *cli.Command {
	c := &cli.Command{
		Name:  "status",
		Args:  "[NAME...]",
		Short: "TLS handshake with every endpoint: is it aligned?",
		Long: "TLS handshake with every configured endpoint, compared with the current bundle.\n" +
			"Exit 1 if any endpoint is not aligned.\n" +
			"--html FILE also writes the survey as one self-contained page (no external assets):\n" +
			"per certificate a table of its endpoints, problems first.",
	}
	asJSON := c.Flags.Bool("json", false, "print results as JSON")
	hash := c.Flags.String("fingerprint", "sha256", "fingerprint shown: md5, sha1 or sha256")
	parallel := c.Flags.Int("parallel", 64, "endpoints probed at once")
	timeout := c.Flags.Duration("timeout", 3*time.Second, "per endpoint")
	metricsFile := c.Flags.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	htmlFile := c.Flags.String("html", "", "also write the survey as a self-contained HTML page to `file`")
	fromStore := c.Flags.Bool("store", false, "list what every node pulling from the store reported instead (pull mode)")
	c.Run = func(ctx context.Context, names []string) error {
		if *fromStore {
			cfg, err := e.loadConfig()
			if err != nil {
				return err
			}
			return e.storeStatus(ctx, cfg, names, *asJSON)
		}
		if _, err := verify.Format(nil, *hash); err != nil {
			return cli.Usage(err)
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		eps, err := e.statusEndpoints(cfg, names)
		if err != nil {
			return err
		}
		now := time.Now()
		reports := verify.Survey(ctx, eps, *parallel, *timeout, now, e.surveyProgress())
		e.progressDone()
		// Exec targets without a TLS endpoint answer through current.
		execs, err := e.execReports(ctx, cfg, names)
		if err != nil {
			return err
		}
		reports = append(reports, execs...)
		counts := map[string]int{}
		for _, r := range reports {
			counts[r.State]++
		}
		summary := summarize(counts, len(reports))
		if err := statusMetrics(reports).WriteIfSet(*metricsFile); err != nil {
			return err
		}
		if *htmlFile != "" {
			page := report.Page{Generated: now, Summary: summary, Hash: *hash, Reports: reports}
			if err := report.WriteFile(*htmlFile, page); err != nil {
				return fmt.Errorf("write status page: %w", err)
			}
		}
		// Why a host is behind, when the last push to it failed (a
		// changed host key, a refused install): the endpoint only shows
		// the old certificate.
		st, err := loadFleetState(cfg.StateDir)
		if err != nil {
			e.log.Warn("read the push state", "error", err)
		}
		if err := e.printStatus(withLastPush(reports, st), counts, summary, *hash, *asJSON, waveStatuses(cfg, names, reports)); err != nil {
			return err
		}
		if counts[verify.Aligned] != len(reports) {
			return cli.ErrReported
		}
		return nil
	}
	return c
}

// statusEndpoints lists the verify endpoints of the named certificates
// (default: all), each with the fingerprint of its current bundle.
func (e *env) statusEndpoints(cfg *inventory.Config, names []string) ([]verify.Endpoint, error) {
	if len(names) == 0 {
		names = cfg.CertOrder
	}
	var eps []verify.Endpoint
	for _, name := range names {
		cert, err := cfg.Cert(name)
		if err != nil {
			return nil, cli.Usage(err)
		}
		want := ""
		b, err := e.store(cfg).Current(name)
		switch {
		case err == nil:
			want = b.Manifest.Fingerprint
		case !errors.Is(err, bundle.ErrNoBundle):
			return nil, err
		}
		hosts, err := cfg.HostsFor(name)
		if err != nil {
			return nil, cli.Usage(err)
		}
		anchor := cert.Anchor
		trusted := func(leaf *x509.Certificate, chain []*x509.Certificate) error {
			return anchor.Check(leaf, chain, time.Now())
		}
		for _, h := range hosts {
			for _, addr := range h.Verify {
				eps = append(eps, verify.Endpoint{Cert: name, Host: h.Name, Address: addr, SNI: cert.SNI(), Want: want, Trusted: trusted})
			}
		}
	}
	return eps, nil
}

// printStatus prints the survey as JSON or as a table and a summary.
// statusEntry is one endpoint of status: the survey's report and, for an
// endpoint not aligned whose host's last push failed, that push's error.
type statusEntry struct {
	verify.Report
	LastPushError string `json:"last_push_error,omitempty"`
}

func withLastPush(reports []verify.Report, st fleetState) []statusEntry {
	out := make([]statusEntry, 0, len(reports))
	for _, r := range reports {
		se := statusEntry{Report: r}
		if hs, ok := st[r.Cert][r.Host]; ok && r.State != verify.Aligned && hs.LastResult == push.Failed {
			se.LastPushError = hs.LastError
			if se.LastPushError == "" {
				se.LastPushError = "failed"
			}
		}
		out = append(out, se)
	}
	return out
}

func (e *env) printStatus(reports []statusEntry, counts map[string]int, summary, hash string, asJSON bool, waves []waveStatus) error {
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		out := map[string]any{"endpoints": reports, "counts": counts, "summary": summary}
		if len(waves) > 0 {
			out["waves"] = waves
		}
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "CERT\tHOST\tENDPOINT\tSTATE\tFINGERPRINT (%s)\tNOT AFTER\tDAYS\n", strings.ToUpper(hash))
	for _, r := range reports {
		fp, notAfter, days := "-", "-", "-"
		if r.Leaf != nil {
			fp, _ = verify.Format(r.Leaf.Raw, hash)
			notAfter = r.NotAfter.Format(time.DateOnly)
			days = fmt.Sprint(r.DaysLeft)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Cert, r.Host, r.Address, r.State, fp, notAfter, days)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printWaves(e.stdout, waves); err != nil {
		return err
	}
	for _, r := range reports {
		if r.LastPushError != "" {
			fmt.Fprintf(e.stdout, "%s %s: last push failed: %s\n", r.Cert, r.Host, r.LastPushError)
		}
	}
	_, err := fmt.Fprintln(e.stdout, summary)
	return err
}

// summarize gives a line such as "42/45 aligned, 2 stale, 1 unreachable".
func summarize(counts map[string]int, total int) string {
	s := fmt.Sprintf("%d/%d aligned", counts[verify.Aligned], total)
	var others []string
	for state, n := range counts {
		if state != verify.Aligned && n > 0 {
			others = append(others, fmt.Sprintf("%d %s", n, state))
		}
	}
	sort.Strings(others)
	if len(others) > 0 {
		s += ", " + strings.Join(others, ", ")
	}
	return s
}
