package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/wire"
)

func (e *env) installCommand() *cli.Command {
	c := &cli.Command{
		Name:  "install",
		Args:  "[NAME...]",
		Short: "verify and install the newest bundle waiting for each certificate",
		Long: `Verify and install the newest bundle waiting for each certificate NAME
(default: every configured one), then test, reload and verify over TLS;
roll back on any failure. Exit 1 if any certificate failed.`,
	}
	force := c.Flags.Bool("force", false, "install even if already installed or older than the installed certificate")
	id := c.Flags.String("id", "", "install the bundle with this `id` (needs exactly one NAME)")
	asJSON := c.Flags.Bool("json", false, `print {"results":[...]} on stdout`)
	metricsFile := c.Flags.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	c.Run = func(ctx context.Context, names []string) error {
		if *id != "" && len(names) != 1 {
			return cli.Usagef("--id needs exactly one certificate NAME")
		}
		if *id != "" && !wire.ValidID(*id) {
			return cli.Usagef("--id %q is not a bundle id (16 lowercase hex digits)", *id)
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		for _, n := range names {
			if _, ok := cfg.Certs[n]; !ok {
				e.log.Warn("certificate not configured", "cert", n, "config", cfg.Path)
			}
		}
		in := e.installer(cfg)
		results, err := in.Install(ctx, names, install.Options{Force: *force, ID: *id})
		if err != nil {
			return err
		}
		if *metricsFile != "" {
			st, err := in.Check(0)
			if err != nil {
				return err
			}
			if err := installMetrics(results, st, time.Now()).WriteFile(*metricsFile); err != nil {
				return err
			}
		}
		if err := e.printResults(results, *asJSON); err != nil {
			return err
		}
		for _, r := range results {
			if !r.OK() {
				return cli.ErrReported
			}
		}
		return nil
	}
	return c
}

func (e *env) printResults(results []install.Result, asJSON bool) error {
	if asJSON {
		if results == nil {
			results = []install.Result{}
		}
		return writeJSON(e.stdout, struct {
			Results []install.Result `json:"results"`
		}{results})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, r := range results {
		detail := ""
		switch {
		case r.Error != "":
			detail = r.Error
		case r.Result == install.Installed && r.Previous != "":
			detail = "was " + r.Previous + ", expires " + day(r.NotAfter)
		case r.Result == install.Installed || r.Result == install.Unchanged:
			detail = "expires " + day(r.NotAfter)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Cert, r.Result, dash(r.ID), detail)
	}
	return tw.Flush()
}
