package push

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/verify"
)

// Check looks once at what h serves now: a TLS handshake with each of its
// verify endpoints, which must present the bundle's certificate, and for
// an exec target without endpoints its current verb. A host with
// neither is not checked. It is what a pause between waves watches.
func (p *Pusher) Check(ctx context.Context, h inventory.Host, timeout time.Duration) error {
	for _, ep := range h.Verify {
		s, err := verify.Probe(ctx, ep, p.opts.SNI, timeout)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", h.Name, ep, err)
		}
		if s.Fingerprint != p.b.Manifest.Fingerprint {
			return fmt.Errorf("%s: %s serves %.16s, not %.16s", h.Name, ep, s.Fingerprint, p.b.Manifest.Fingerprint)
		}
	}
	if !h.IsExec() || len(h.Verify) > 0 {
		return nil
	}
	fps, err := LeafFingerprints(p.files["cert.pem"])
	if err != nil {
		return err
	}
	dir, err := p.stage(fps)
	if err != nil {
		return err
	}
	defer removeAll(dir)
	fp, err := p.current(ctx, h, p.execEnv(h, dir, fps))
	if err != nil {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	if !fps.Matches(fp) {
		return fmt.Errorf("%s: current reports %.16s, not %.16s", h.Name, orNone(fp), fps.SHA256)
	}
	return nil
}

func orNone(fp string) string {
	if fp == "" {
		return "none"
	}
	return fp
}

// ErrPauseCheck wraps a failed check during a pause between waves.
var ErrPauseCheck = errors.New("check during the pause failed")

// Watch checks hosts (see Check) every interval for d, and returns the
// first failure (wrapping ErrPauseCheck), or ctx's error.
func (p *Pusher) Watch(ctx context.Context, hosts []inventory.Host, d, interval time.Duration) error {
	end := time.Now().Add(d)
	for {
		for _, h := range hosts {
			if err := p.Check(ctx, h, verifyTimeout); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("%w: %w", ErrPauseCheck, err)
			}
		}
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		t := time.NewTimer(min(interval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Current runs h's current verb (h an exec target) and returns the
// fingerprint it reports (lowercase hex, "" for none) and whether it is
// the bundle's.
func (p *Pusher) Current(ctx context.Context, h inventory.Host) (fp string, matches bool, err error) {
	fps, err := LeafFingerprints(p.files["cert.pem"])
	if err != nil {
		return "", false, err
	}
	dir, err := p.stage(fps)
	if err != nil {
		return "", false, err
	}
	defer removeAll(dir)
	ctx, cancel := context.WithTimeout(ctx, p.execTimeout(h))
	defer cancel()
	fp, err = p.current(ctx, h, p.execEnv(h, dir, fps))
	return fp, err == nil && fps.Matches(fp), err
}
