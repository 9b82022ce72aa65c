package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
)

func (e *env) statusCommand() *cli.Command {
	c := &cli.Command{
		Name:  "status",
		Short: "what is installed, and whether the endpoint serves it",
		Long: `Show what is installed for each certificate and, where an endpoint is
configured, whether it serves it. Exit 1 if anything is wrong.`,
	}
	asJSON := c.Flags.Bool("json", false, `print {"certs":[...]} on stdout`)
	c.Run = func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef("status takes no arguments")
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		st, err := e.installer(cfg).Status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if st == nil {
				st = []install.Status{}
			}
			err = writeJSON(e.stdout, struct {
				Certs []install.Status `json:"certs"`
			}{st})
		} else {
			err = e.printStatus(st)
		}
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Error != "" || s.Endpoint != "" && !s.Serving {
				return cli.ErrReported
			}
		}
		return nil
	}
	return c
}

func (e *env) printStatus(st []install.Status) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERT\tID\tEXPIRES\tDAYS\tDOMAINS\tLIVE\tSERVED")
	for _, s := range st {
		served := "-"
		switch {
		case s.Endpoint == "":
		case s.Serving:
			served = "yes (" + s.Endpoint + ")"
		case s.Served != "":
			served = "NO: " + s.Endpoint + " serves " + s.Served[:16]
		default:
			served = "NO: " + s.Endpoint + " unreachable"
		}
		days := "-"
		if !s.NotAfter.IsZero() {
			days = fmt.Sprint(s.DaysLeft)
		}
		id := dash(s.ID)
		if s.Placeholder {
			id += " (placeholder)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Cert, id, day(s.NotAfter), days,
			dash(strings.Join(s.Domains, ",")), dash(s.Live), served)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st {
		if s.Error != "" {
			fmt.Fprintf(e.stderr, "certnode: %s: %s\n", s.Cert, s.Error)
		}
	}
	return nil
}
