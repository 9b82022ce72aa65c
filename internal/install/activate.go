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

// activate records the install, switches the live link to the new
// version and brings it up, rolling back on failure.
func (a *attempt) activate(m *bundle.Manifest, created bool) {
	in, name := a.in, a.cert.Name
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
	if loaded, err := in.bringUp(a.ctx, a.cert, m.ID, m); err != nil {
		a.revert(m.ID, err, loaded, dropNew)
		return
	}
	a.res.Result = Installed
	a.settle()
	in.prune(name, m.ID)
}

// bringUp runs the steps after the live link of c was switched to version
// id, whose manifest is m: the config test, the reload, and the TLS check
// of every verify endpoint. It stops at the first failure. loaded reports
// whether the service may have loaded the new files (the test passed), so
// that a rollback must reload it too. A normal install (activate) and the
// recovery of an interrupted one (finishSwitched) both use it.
func (in *Installer) bringUp(ctx context.Context, c *Cert, id string, m *bundle.Manifest) (loaded bool, err error) {
	env := envFor(in, c.Name, id)
	if len(c.Test) > 0 {
		if err := in.command(ctx, "test", c.Test, env); err != nil {
			// The service never loaded the new files: no reload.
			return false, fmt.Errorf("%w: %v", ErrTestFailed, err)
		}
	}
	if err := in.serviceUpdate(ctx, c, env); err != nil {
		return true, err
	}
	return true, in.verifyServed(ctx, c, m.Domains, m.Fingerprint)
}

// revert rolls a failed activation of version id back to the version that
// was live before (reloading the service when reload is set) and reports
// failure as rolled back, or as failed when the rollback did not complete;
// then the install record stays, for the next run.
func (a *attempt) revert(id string, failure error, reload bool, dropNew func()) {
	if err := a.in.rollback(a.ctx, a.cert, a.cur, id, reload); err != nil {
		a.fail(Failed, errors.Join(failure, err))
		return
	}
	a.fail(RolledBack, failure)
	a.settle()
	dropNew()
}

// settle ends an install whose outcome is settled by removing its record.
func (a *attempt) settle() {
	if err := a.in.clearPending(a.cert.Name); err != nil {
		a.fail(Failed, errors.Join(a.res.Err, err))
	}
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

// rollback points live/<name> back at the previous version prev (or
// removes it when there was none), away from version id, and, when reload
// is set, reloads the service and checks that the previous certificate is
// served again. It runs even when ctx is cancelled, within the configured
// timeouts. Every rollback, of a normal install or of an interrupted one,
// goes through it.
func (in *Installer) rollback(ctx context.Context, c *Cert, prev *installed, id string, reload bool) error {
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
		id = prev.ID
	}
	env := envFor(in, c.Name, id)
	if prev == nil && c.HAProxy != nil && len(c.Reload) == 0 {
		// Nothing to hand HAProxy back: it keeps what it had.
		return nil
	}
	if err := in.serviceUpdate(ctx, c, env); err != nil {
		return fmt.Errorf("%w: after rollback: %v", ErrRollback, err)
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

// envFor is the environment, added to certnode's own, of the test and
// reload commands for version id of name.
func envFor(in *Installer, name, id string) []string {
	return []string{
		"CERTNODE_NAME=" + name,
		"CERTNODE_ID=" + id,
		"CERTNODE_LIVE_DIR=" + filepath.Join(in.liveDir(), name),
	}
}
