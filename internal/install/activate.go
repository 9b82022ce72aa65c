package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/verify"
)

// activate swaps the live link to the new version, tests, reloads and
// verifies, rolling back on failure.
func (a *attempt) activate(m *bundle.Manifest, created bool) {
	in, c, name := a.in, a.cert, a.cert.Name
	target := filepath.Join("..", "archive", name, m.ID)
	// dropNew removes a version directory this run created and that is
	// not live, so that a rolled-back bundle does not crowd out good ones.
	dropNew := func() {
		if created {
			os.RemoveAll(filepath.Join(in.archiveDir(name), m.ID))
		}
	}
	if err := in.writePending(name, a.cur, m.ID); err != nil {
		dropNew()
		a.keepIncoming = true
		a.fail(Failed, err)
		return
	}
	if err := in.swap(name, target); err != nil {
		in.clearPending(name)
		dropNew()
		a.keepIncoming = true
		a.fail(Failed, fmt.Errorf("switch live link: %w", err))
		return
	}
	// done ends the install: the record goes once the outcome is settled
	// (a rollback that did not complete keeps it, for the next run).
	done := func() {
		if err := in.clearPending(name); err != nil {
			a.fail(Failed, errors.Join(a.res.Err, err))
		}
	}
	env := []string{
		"CERTNODE_NAME=" + name,
		"CERTNODE_ID=" + m.ID,
		"CERTNODE_LIVE_DIR=" + filepath.Join(in.liveDir(), name),
	}
	if len(c.Test) > 0 {
		if err := in.command(a.ctx, "test", c.Test, env); err != nil {
			err = fmt.Errorf("%w: %v", ErrTestFailed, err)
			// The service never loaded the new files: no reload.
			if rerr := in.rollback(a.ctx, c, a.cur, env, false); rerr != nil {
				a.fail(Failed, errors.Join(err, rerr))
				return
			}
			a.fail(RolledBack, err)
			done()
			dropNew()
			return
		}
	}
	var failure error
	if len(c.Reload) > 0 {
		if err := in.command(a.ctx, "reload", c.Reload, env); err != nil {
			failure = fmt.Errorf("%w: %v", ErrReloadFailed, err)
		}
	}
	if failure == nil {
		failure = in.verifyServed(a.ctx, c, m.Domains, m.Fingerprint)
	}
	if failure != nil {
		if rerr := in.rollback(a.ctx, c, a.cur, env, true); rerr != nil {
			a.fail(Failed, errors.Join(failure, rerr))
			return
		}
		a.fail(RolledBack, failure)
		done()
		dropNew()
		return
	}
	a.res.Result = Installed
	done()
	in.prune(name, m.ID)
}

// verifyServed checks every verify endpoint of c for fingerprint.
func (in *Installer) verifyServed(ctx context.Context, c *Cert, domains []string, fingerprint string) error {
	if len(c.Verify) == 0 {
		return nil
	}
	sni := sniFor(c, domains)
	var errs []error
	for _, ep := range c.Verify {
		start := time.Now()
		if err := verify.Expect(ctx, ep, sni, fingerprint, c.VerifyTimeout); err != nil {
			errs = append(errs, fmt.Errorf("%s (SNI %s): %w", ep, sni, err))
			continue
		}
		in.log().Debug("verified", "cert", c.Name, "endpoint", ep, "fingerprint", fingerprint, "duration", time.Since(start))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrVerifyFailed, errors.Join(errs...))
	}
	return nil
}

func sniFor(c *Cert, domains []string) string {
	if c.VerifySNI != "" {
		return c.VerifySNI
	}
	if len(c.Domains) > 0 {
		domains = c.Domains
	}
	return verify.DefaultSNI(domains)
}

// rollback points live/<name> back at the previous version (or removes it
// when there was none) and, when reload is set, reloads the service and
// checks that the previous certificate is served again. It runs even when
// ctx is cancelled, within the configured timeouts.
func (in *Installer) rollback(ctx context.Context, c *Cert, prev *installed, env []string, reload bool) error {
	ctx = context.WithoutCancel(ctx)
	var err error
	if prev != nil {
		err = in.swap(c.Name, prev.Target)
	} else {
		err = in.unlink(c.Name)
	}
	if err != nil {
		return fmt.Errorf("%w: restore live link: %v", ErrRollback, err)
	}
	in.log().Info("rolled back live link", "cert", c.Name, "previous", prevID(prev))
	if !reload {
		return nil
	}
	if prev != nil {
		env = []string{
			"CERTNODE_NAME=" + c.Name,
			"CERTNODE_ID=" + prev.ID,
			"CERTNODE_LIVE_DIR=" + filepath.Join(in.liveDir(), c.Name),
		}
	}
	if len(c.Reload) > 0 {
		if err := in.command(ctx, "reload", c.Reload, env); err != nil {
			return fmt.Errorf("%w: reload after rollback: %v", ErrRollback, err)
		}
	}
	if prev != nil && prev.Manifest != nil {
		if err := in.verifyServed(ctx, c, prev.Manifest.Domains, prev.Manifest.Fingerprint); err != nil {
			return fmt.Errorf("%w: previous certificate %s not served after rollback: %v", ErrRollback, prev.ID, err)
		}
	}
	return nil
}

func prevID(p *installed) string {
	if p == nil {
		return ""
	}
	return p.ID
}

func envFor(in *Installer, name, id string) []string {
	return []string{
		"CERTNODE_NAME=" + name,
		"CERTNODE_ID=" + id,
		"CERTNODE_LIVE_DIR=" + filepath.Join(in.liveDir(), name),
	}
}
