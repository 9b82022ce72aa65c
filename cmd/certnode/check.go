package main

import (
	"context"
	"fmt"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/metrics"
)

func (e *env) checkCommand() *cli.Command {
	c := &cli.Command{
		Name:  "check",
		Short: "exit 1 if a certificate expires soon (for cron/monitoring)",
		Long: `Check every configured certificate: exit 1, naming the problem, if one is
missing, unreadable or expires within the given number of days.`,
	}
	days := c.Flags.Int("days", 14, "fail if a certificate expires within `N` days")
	asJSON := c.Flags.Bool("json", false, `print {"certs":[...]} on stdout`)
	metricsFile := c.Flags.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	c.Run = func(_ context.Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("check takes no arguments")
		}
		if *days < 0 {
			return cli.Usagef("--days must not be negative")
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		st, err := e.installer(cfg).Check(*days)
		if err != nil {
			return err
		}
		if *metricsFile != "" {
			var s metrics.Set
			certMetrics(&s, st)
			if err := s.WriteFile(*metricsFile); err != nil {
				return err
			}
		}
		bad := 0
		for _, s := range st {
			if s.Problem != "" {
				bad++
			}
		}
		if *asJSON {
			if st == nil {
				st = []install.Status{}
			}
			if err := writeJSON(e.stdout, struct {
				Certs []install.Status `json:"certs"`
			}{st}); err != nil {
				return err
			}
		} else {
			for _, s := range st {
				if s.Problem != "" {
					fmt.Fprintf(e.stdout, "%s: %s\n", s.Cert, s.Problem)
				}
			}
			if bad == 0 {
				fmt.Fprintf(e.stdout, "all %d certificates valid for more than %d days\n", len(st), *days)
			}
		}
		if bad > 0 {
			return cli.ErrReported
		}
		return nil
	}
	return c
}
