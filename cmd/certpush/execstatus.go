package main

import (
	"context"
	"errors"
	"sync"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
	"github.com/certpush/certpush/internal/verify"
)

// execReports asks each exec target of the named certificates (default:
// all) that has no verify endpoint what it serves, through its current
// verb, and reports it as an endpoint "exec:<program>": aligned, stale
// (another fingerprint, or none), or unreachable (the command failed).
func (e *env) execReports(ctx context.Context, cfg *inventory.Config, names []string) ([]verify.Report, error) {
	if len(names) == 0 {
		names = cfg.CertOrder
	}
	var out []verify.Report
	for _, name := range names {
		cert, err := cfg.Cert(name)
		if err != nil {
			return nil, err
		}
		hosts, err := cfg.HostsFor(name)
		if err != nil {
			return nil, err
		}
		var targets []inventory.Host
		for _, h := range hosts {
			if h.IsExec() && len(h.Verify) == 0 {
				targets = append(targets, h)
			}
		}
		if len(targets) == 0 {
			continue
		}
		b, err := e.store(cfg).Current(name)
		if errors.Is(err, bundle.ErrNoBundle) {
			for _, h := range targets {
				out = append(out, verify.Report{Endpoint: verify.Endpoint{Cert: name, Host: h.Name, Address: h.Location()}, State: verify.Stale, Error: "no bundle yet"})
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		p, err := push.New(b, push.Options{ExecOnly: true, Timeout: cfg.SSH.Timeout, SNI: cert.SNI(), Logger: e.log})
		if err != nil {
			return nil, err
		}
		reports := make([]verify.Report, len(targets))
		var wg sync.WaitGroup
		for i, h := range targets {
			wg.Go(func() {
				r := verify.Report{Endpoint: verify.Endpoint{Cert: name, Host: h.Name, Address: h.Location(), Want: b.Manifest.Fingerprint}}
				fp, ok, err := p.Current(ctx, h)
				switch {
				case err != nil:
					r.State, r.Error = verify.Unreachable, err.Error()
				case ok:
					r.State = verify.Aligned
				default:
					r.State = verify.Stale
				}
				if len(fp) == 64 {
					r.Served = fp
				}
				reports[i] = r
			})
		}
		wg.Wait()
		out = append(out, reports...)
	}
	return out, nil
}
