package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/pull"
	"github.com/certpush/certpush/internal/store"
)

func (e *env) pullCommand() *cli.Command {
	c := &cli.Command{
		Name:  "pull",
		Args:  "[NAME...]",
		Short: "install the current certificate from the store (pull mode)",
		Long: `Read each certificate's current pointer from the store in certnode.yaml
(one conditional request; nothing more when it has not changed), and when
it names another bundle than the installed one, download it, verify it,
decrypt its key with the node's identity and install it as a push would
(test, reload, TLS check, rollback). Exit 1 if any certificate failed or
the store could not be reached; what is installed keeps being served.`,
	}
	wait := c.Flags.Duration("wait", 0, "at boot: retry with backoff for up to `duration` until every certificate is installed")
	boot := c.Flags.Bool("boot", false, "at boot, before the service starts: config test only, no reload and no TLS check")
	asJSON := c.Flags.Bool("json", false, `print {"results":[...]} on stdout`)
	metricsFile := c.Flags.String("metrics-file", "", "write Prometheus metrics to `file` (node_exporter textfile collector)")
	c.Run = func(ctx context.Context, names []string) error {
		cfg, err := e.loadConfig()
		if err != nil {
			return err
		}
		if cfg.Store == nil {
			return cli.Usagef("%s has no store section: pull mode needs store: {url: s3://bucket/prefix or file:///dir, identity: FILE}", cfg.Path)
		}
		if cfg.Store.Identity == "" {
			return cli.Usagef("%s: store.identity is missing: the node's age identity file or SSH host key (e.g. /etc/ssh/ssh_host_ed25519_key)", cfg.Path)
		}
		ids, err := store.LoadIdentity(cfg.Store.Identity)
		if err != nil {
			return cli.Usage(err)
		}
		st, err := store.Open(ctx, cfg.Store)
		if err != nil {
			return cli.Usage(err)
		}
		nodeID := cfg.Store.NodeID
		if nodeID == "" {
			nodeID, _ = os.Hostname()
		}
		in := e.installer(cfg)
		p := &pull.Puller{Store: st, Installer: in, Identities: ids, NodeID: nodeID, Boot: *boot, Logger: e.log}
		results, err := e.pullUntil(ctx, p, names, *wait)
		if err != nil {
			return err
		}
		if *metricsFile != "" {
			if err := e.pullMetrics(in, results, *metricsFile); err != nil {
				return err
			}
		}
		plain := make([]install.Result, len(results))
		failed := false
		for i, r := range results {
			plain[i] = r.Result
			failed = failed || !r.OK() || r.Result.Result == install.Nothing
			if errors.Is(r.Err, pull.ErrUnreachable) {
				fmt.Fprintf(e.stderr, "certnode: pull %s: %v; still serving what is installed\n", r.Cert, r.Err)
			}
		}
		if err := e.printResults(plain, *asJSON); err != nil {
			return err
		}
		if failed {
			return cli.ErrReported
		}
		return nil
	}
	return c
}

// pullUntil pulls once, or with wait until every certificate is
// installed or wait has passed, backing off from 1 s to 30 s.
func (e *env) pullUntil(ctx context.Context, p *pull.Puller, names []string, wait time.Duration) ([]pull.Result, error) {
	deadline := time.Now().Add(wait)
	delay := time.Second
	for {
		results, err := p.Pull(ctx, names)
		if err != nil {
			return nil, err
		}
		done := true
		for _, r := range results {
			done = done && r.OK() && r.Result.Result != install.Nothing && r.ID != ""
		}
		left := time.Until(deadline)
		if done || left <= 0 {
			return results, nil
		}
		e.log.Info("waiting for the store", "retry_in", delay)
		select {
		case <-ctx.Done():
			return results, nil
		case <-time.After(min(delay, left)):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

func (e *env) pullMetrics(in *install.Installer, results []pull.Result, path string) error {
	st, err := in.Check(0)
	if err != nil {
		return err
	}
	plain := make([]install.Result, len(results))
	reachable := 1.0
	for i, r := range results {
		plain[i] = r.Result
		if errors.Is(r.Err, pull.ErrUnreachable) {
			reachable = 0
		}
	}
	s := installMetrics(plain, st, time.Now())
	s.Gauge("certnode_pull_store_reachable", "1 if the last pull reached the store.", nil, reachable)
	return s.WriteFile(path)
}
