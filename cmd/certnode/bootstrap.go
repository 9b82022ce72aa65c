package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
)

func (e *env) bootstrapCommand() *cli.Command {
	c := &cli.Command{
		Name:  "bootstrap",
		Args:  "NAME",
		Short: "install a short-lived self-signed placeholder before the first real certificate",
		Long: `Install a self-signed placeholder certificate for NAME's domains, so that
the web server's config can point at <root>/live/NAME/ and start before
the first real certificate arrives. It is marked as a placeholder (status,
check and metrics say so; certpush status reports it as untrusted), runs
no test and no reload, and the first pushed bundle replaces it. A
certificate that has anything installed is left alone.

A new node, in order:
  1. certnode.yaml with NAME under certs (domains set), trusted_keys
  2. certnode bootstrap NAME
  3. point the web server at <root>/live/NAME/{fullchain,privkey}.pem and
     start or reload it
  4. on the management server: certpush trust HOST, add HOST, certpush push`,
	}
	days := c.Flags.Int("days", int(install.DefaultPlaceholderValidity/(24*time.Hour)), "how many `days` the placeholder is valid")
	asJSON := c.Flags.Bool("json", false, `print {"results":[...]} on stdout`)
	c.Run = func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return cli.Usagef("bootstrap takes one certificate NAME")
		}
		if *days < 1 || *days > 90 {
			return cli.Usagef("--days %d: want 1 to 90", *days)
		}
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		r, err := e.installer(cfg).Bootstrap(ctx, args[0], time.Duration(*days)*24*time.Hour)
		if errors.Is(err, install.ErrNotConfigured) {
			return cli.Usage(err)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return e.printResults([]install.Result{r}, true)
		}
		live := filepath.Join(cfg.Root, "live", r.Cert)
		if r.Result == install.Unchanged {
			fmt.Fprintf(e.stdout, "%s: %s is installed already (%s): left alone\n", r.Cert, live, r.ID)
			return nil
		}
		fmt.Fprintf(e.stdout, "%s: placeholder %s installed, self-signed, expires %s\n", r.Cert, r.ID, r.NotAfter.UTC().Format(time.DateOnly))
		fmt.Fprintf(e.stdout, "point the web server at %s/fullchain.pem and %s/privkey.pem; the first push replaces it\n", live, live)
		return nil
	}
	return c
}
