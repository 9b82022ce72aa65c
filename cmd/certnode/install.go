package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/bundle"
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
roll back on any failure. Exit 1 if any certificate failed.

With --stdin the bundle comes on standard input as certpush's bundle
stream (one NAME and --id needed) instead of from incoming: certpush
pushes install: now hosts this way, in the one command of the push. It is
verified in memory (signature, sizes, hashes, names, dates) before
anything is written; --dry-run stops there.`,
	}
	force := c.Flags.Bool("force", false, "install even if already installed or older than the installed certificate")
	id := c.Flags.String("id", "", "install the bundle with this `id` (needs exactly one NAME)")
	stdin := c.Flags.Bool("stdin", false, "read the bundle from standard input (certpush's bundle stream), not from incoming")
	dryRun := c.Flags.Bool("dry-run", false, "with --stdin: verify and report what would be done, change nothing")
	asJSON := c.Flags.Bool("json", false, `print {"results":[...]} on stdout`)
	metricsFile := c.Flags.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	c.Run = func(ctx context.Context, names []string) error {
		if *id != "" && len(names) != 1 {
			return cli.Usagef("--id needs exactly one certificate NAME")
		}
		if *id != "" && !wire.ValidID(*id) {
			return cli.Usagef("--id %q is not a bundle id (16 lowercase hex digits)", *id)
		}
		if *stdin && (*id == "" || len(names) != 1) {
			return cli.Usagef("--stdin needs --id and exactly one certificate NAME")
		}
		if *dryRun && !*stdin {
			return cli.Usagef("--dry-run works with --stdin only")
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		opts := install.Options{Force: *force, ID: *id, DryRun: *dryRun}
		if *stdin {
			if opts.Contents, err = wire.DecodeStream(e.stdin, bundleStreamFiles, bundle.MaxFileSize); err != nil {
				return fmt.Errorf("read the bundle from standard input: %w (nothing was changed)", err)
			}
		}
		for _, n := range names {
			if _, ok := cfg.Certs[n]; !ok {
				e.log.Warn("certificate not configured", "cert", n, "config", cfg.Path)
			}
		}
		in := e.installer(cfg)
		results, err := in.Install(ctx, names, opts)
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

// bundleStreamFiles are the files of a bundle stream, the manifest first.
var bundleStreamFiles = append([]string{bundle.ManifestFile}, bundle.Files...)

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
