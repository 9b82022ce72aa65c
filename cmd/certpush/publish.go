package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/pull"
	"github.com/certpush/certpush/internal/store"
)

func (e *env) publishCommand() *cli.Command {
	c := &cli.Command{
		Name:  "publish",
		Args:  "[NAME...]",
		Short: "put the current bundle of each certificate into the store (pull mode)",
		Long: `Put the current bundle of each certificate NAME (default: all) into the
store of certpush.yaml: version objects create-only, read back and compared
by SHA-256, the key encrypted to store.recipients; then move current with a
conditional write on the version it replaces. What is current already is
left alone ("unchanged"). obtain, renew, import and hook publish by
themselves when a store is configured.`,
	}
	var lf lockFlags
	lf.register(&c.Flags)
	c.Run = func(ctx context.Context, names []string) error {
		cfg, unlock, err := e.lockedConfig(ctx, lf)
		if err != nil {
			return err
		}
		defer unlock()
		if cfg.Store == nil {
			return cli.Usagef("%s has no store section: add store: {url: s3://bucket/prefix, recipients: [...]}", cfg.Path)
		}
		if len(names) == 0 {
			names = cfg.CertOrder
		}
		failed := false
		for _, n := range names {
			if _, err := cfg.Cert(n); err != nil {
				return cli.Usage(err)
			}
			if _, err := e.publish(ctx, cfg, n, pull.PublishOptions{}); err != nil {
				fmt.Fprintf(e.stderr, "certpush: %v\n", err)
				failed = true
			}
		}
		if failed {
			return cli.ErrReported
		}
		return nil
	}
	return c
}

// publisher opens cfg's store for publishing.
func (e *env) publisher(ctx context.Context, cfg *inventory.Config) (*pull.Publisher, error) {
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	signer, err := bundle.LoadOrCreateSigner(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	return &pull.Publisher{Store: st, Signer: signer, Recipients: cfg.Store.Recipients, Logger: e.log}, nil
}

// publish publishes the current bundle of name and notes the outcome.
func (e *env) publish(ctx context.Context, cfg *inventory.Config, name string, opts pull.PublishOptions) (pull.PublishResult, error) {
	b, err := e.store(cfg).Current(name)
	if err != nil {
		return pull.PublishResult{}, fmt.Errorf("%s: %w", name, err)
	}
	p, err := e.publisher(ctx, cfg)
	if err != nil {
		return pull.PublishResult{}, err
	}
	r, err := p.Publish(ctx, b, opts)
	if err != nil {
		return r, fmt.Errorf("publish %w", err)
	}
	if r.Result == pull.Unchanged {
		e.note("%s: unchanged: %s is current in %s", name, r.ID, p.Store)
	} else {
		e.note("%s: published %s to %s", name, r.ID, p.Store)
	}
	return r, nil
}

// autoPublish publishes name after a new bundle when a store is
// configured.
func (e *env) autoPublish(ctx context.Context, cfg *inventory.Config, name string) error {
	if cfg.Store == nil {
		return nil
	}
	_, err := e.publish(ctx, cfg, name, pull.PublishOptions{Fence: e.fences[name]})
	if errors.Is(err, bundle.ErrNoBundle) {
		return nil
	}
	return err
}

// storeStatus prints what every pulling node reported for each
// certificate, against the store's current id.
func (e *env) storeStatus(ctx context.Context, cfg *inventory.Config, names []string, asJSON bool) error {
	if cfg.Store == nil {
		return cli.Usagef("%s has no store section", cfg.Path)
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return cli.Usage(err)
	}
	if len(names) == 0 {
		names = cfg.CertOrder
	}
	type row struct {
		pull.Report
		Current string `json:"current"`
		Aligned bool   `json:"aligned"`
	}
	var rows []row
	for _, n := range names {
		cur := ""
		if o, err := st.Get(ctx, store.CurrentKey(n), "", store.MaxObject); err == nil {
			if ptr, err := store.ParsePointer(o.Data, n, nil); err == nil {
				cur = ptr.ID
			}
		}
		reps, err := pull.Reports(ctx, st, n)
		if err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
		for _, r := range reps {
			rows = append(rows, row{r, cur, cur != "" && r.Installed == cur})
		}
	}
	if asJSON {
		if rows == nil {
			rows = []row{}
		}
		return writeJSONTo(e.stdout, struct {
			Nodes []row `json:"nodes"`
		}{rows})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	aligned := 0
	for _, r := range rows {
		state := "stale"
		if r.Aligned {
			state = "aligned"
			aligned++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Cert, r.Node, state, r.Installed, r.Result, r.Time.Local().Format(time.DateTime))
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "%d of %d nodes aligned\n", aligned, len(rows))
	if aligned != len(rows) {
		return cli.ErrReported
	}
	return nil
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
