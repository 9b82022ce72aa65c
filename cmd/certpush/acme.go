package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certpush/certpush/internal/acme"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/push"
)

func (e *env) obtainCommand() *cli.Command {
	var (
		pf     pushFlags
		noPush bool
		newKey bool
	)
	c := e.pushing(&cli.Command{
		Name:  "obtain",
		Args:  "NAME",
		Short: "obtain a certificate over ACME, bundle and push it",
		Long:  "Obtain a new certificate for NAME over ACME (even if the current one is valid),\nmake it the current bundle and push it to the certificate's hosts.",
	}, &pf, func(ctx context.Context, names []string) error {
		if len(names) != 1 {
			return cli.Usagef("obtain takes one certificate NAME")
		}
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		cert, err := acmeCert(cfg, names[0])
		if err != nil {
			return err
		}
		revs, err := loadRevocations(cfg.StateDir)
		if err != nil {
			return err
		}
		if rv, ok := revs.compromised(cert.Name); ok && !newKey {
			if cur, err := e.store(cfg).Current(cert.Name); err == nil {
				if leaf, err := cur.Leaf(); err == nil && keySHA(leaf) == rv.KeySHA {
					return cli.Usagef("%s: the current key was revoked for key compromise (%s): run 'certpush obtain %s --new-key'", cert.Name, rv.At.Format(time.RFC3339), cert.Name)
				}
			}
		}
		e.newKey = newKey
		if err := e.obtain(ctx, cfg, cert, nil); err != nil {
			return err
		}
		if noPush {
			return nil
		}
		return e.pushNames(ctx, cfg, []string{cert.Name}, pf)
	})
	c.Flags.BoolVar(&noPush, "no-push", false, "make the bundle but do not push it")
	c.Flags.BoolVar(&newKey, "new-key", false, "after a key compromise: a new private key, checked to differ from the current and every compromised one (required after 'revoke --reason keyCompromise')")
	return c
}

// renewAndPush renews each ACME certificate of certs that is due, then
// pushes every one that has a bundle (renewed or not, ACME or not) to the
// hosts that do not have it yet. A failed renewal is reported and the
// others go on; the run then fails.
func (e *env) renewAndPush(ctx context.Context, cfg *inventory.Config, certs []*inventory.Cert, pf pushFlags) error {
	names := make([]string, len(certs))
	for i, c := range certs {
		names[i] = c.Name
	}
	if err := checkHosts(cfg, names, pf); err != nil {
		return err
	}
	var (
		reports []certReport
		failed  []error
	)
	for _, cert := range certs {
		// A certificate not obtained over ACME has nothing to renew here.
		var next time.Time
		if cert.Challenge != nil {
			var err error
			catchUp := func() func() { return e.catchUp(ctx, cfg, cert.Name, pf) }
			if next, err = e.renewOne(ctx, cfg, cert, catchUp); err != nil {
				// A usage error stops the run and is reported once, by
				// the caller; other failures are reported here and the
				// other certificates go on.
				var ue *cli.UsageError
				if errors.As(err, &ue) {
					return err
				}
				fmt.Fprintf(e.stderr, "certpush: %s: renew failed: %v\n", cert.Name, err)
				failed = append(failed, err)
			}
		}
		// Publish whatever is current (an earlier publish may have
		// failed); a bundle that is current in the store already costs
		// one read.
		if err := e.autoPublish(ctx, cfg, cert.Name); err != nil {
			fmt.Fprintf(e.stderr, "certpush: %v\n", err)
			failed = append(failed, err)
		}
		// Push whatever is current, renewed or not: hosts that missed
		// an earlier push catch up.
		if _, err := e.store(cfg).Current(cert.Name); errors.Is(err, bundle.ErrNoBundle) {
			continue
		}
		// A certificate with no hosts is pull mode only.
		if hosts, _ := cfg.HostsFor(cert.Name); len(hosts) == 0 && cfg.Store != nil {
			continue
		}
		rep, err := e.pushCert(ctx, cfg, cert.Name, pf)
		if err != nil {
			return err
		}
		if !next.IsZero() {
			rep.RenewalDue = &next
		}
		reports = append(reports, rep)
	}
	err := e.finishPush(cfg, reports, pf)
	if len(failed) > 0 && err == nil {
		return cli.ErrReported
	}
	return err
}

func (e *env) syncCommand() *cli.Command {
	var pf pushFlags
	return e.pushing(&cli.Command{
		Name:  "sync",
		Args:  "[NAME...]",
		Short: "for the timer: renew what is due, then push every current bundle",
		Long: `What the timer runs. For each certificate (default: all): renew it when it
is due, if it is obtained over ACME (as renew does); then push its current
bundle, whatever made it (ACME, certbot's hook, import), to every host that
does not have it yet. A host that was down during a certbot renewal or an
import gets the bundle on the next run, not at the next renewal.
Safe to run every few minutes to every few hours.`,
	}, &pf, func(ctx context.Context, names []string) error {
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		if len(names) == 0 {
			names = cfg.CertOrder
		}
		var certs []*inventory.Cert
		for _, n := range names {
			c, err := cfg.Cert(n)
			if err != nil {
				return cli.Usage(err)
			}
			certs = append(certs, c)
		}
		return e.renewAndPush(ctx, cfg, certs, pf)
	})
}

func (e *env) renewCommand() *cli.Command {
	var pf pushFlags
	var lease *bool
	var leaseTTL *time.Duration
	c := e.pushing(&cli.Command{
		Name:  "renew",
		Args:  "[NAME...]",
		Short: "renew what is due (threshold or ARI), bundle and push",
		Long: `For each ACME certificate (default: all with a challenge), obtain a new one
when it is due: less than renew_before left (default: a third of its
lifetime, half for lifetimes of 10 days or less), or inside the CA's
renewal window (ARI, asked again only after the CA's Retry-After; kept in
<state_dir>/ari/). A valid certificate is never re-issued. Prints when each
certificate is next due (--json: renewal_due; --metrics-file:
certpush_cert_renewal_due_timestamp_seconds). Then push every named
certificate to the hosts that do not have it yet, so hosts that failed
before are retried.
Safe to run from cron or a systemd timer; docs/acme.md has the interval
for each lifetime.`,
	}, &pf, func(ctx context.Context, names []string) error {
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		var certs []*inventory.Cert
		if len(names) == 0 {
			for _, n := range cfg.CertOrder {
				if c := cfg.Certs[n]; c.Challenge != nil {
					certs = append(certs, c)
				}
			}
			if len(certs) == 0 {
				return cli.Usagef("no certificate in %s has a challenge: renew only handles ACME certificates", cfg.Path)
			}
		} else {
			for _, n := range names {
				c, err := acmeCert(cfg, n)
				if err != nil {
					return err
				}
				certs = append(certs, c)
			}
		}
		if *lease {
			return e.renewLeased(ctx, cfg, certs, *leaseTTL)
		}
		return e.renewAndPush(ctx, cfg, certs, pf)
	})
	lease = c.Flags.Bool("lease", false, "pull mode: renew only if this run wins the certificate's lease in the store, then publish")
	leaseTTL = c.Flags.Duration("lease-ttl", 10*time.Minute, "how long the lease lasts without a refresh")
	return c
}

// renewOne obtains a new certificate for cert when it is due, and returns
// when the (new) current certificate is next due, zero if unknown. The
// CA's renewal information is asked once per Retry-After (kept in
// <state_dir>/ari/NAME.json); a certificate revoked by certpush is due.
//
// beforeOrder, when not nil, runs when a renewal is due and the current
// certificate is still valid, before the order; the function it returns
// runs when the order is over.
func (e *env) renewOne(ctx context.Context, cfg *inventory.Config, cert *inventory.Cert, beforeOrder func() (afterOrder func())) (time.Time, error) {
	cur, err := e.store(cfg).Current(cert.Name)
	if errors.Is(err, bundle.ErrNoBundle) {
		e.note("%s: no certificate yet: obtaining one", cert.Name)
		return e.obtainAndNext(ctx, nil, cfg, cert, nil)
	}
	if err != nil {
		return time.Time{}, err
	}
	leaf, err := cur.Leaf()
	if err != nil {
		return time.Time{}, err
	}
	revs, err := loadRevocations(cfg.StateDir)
	if err != nil {
		return time.Time{}, err
	}
	rv, revoked := revs.revoked(cert.Name, leaf)
	if cert.RenewBefore > 0 && !revoked {
		// A threshold of its own: while it is not reached the stored
		// bundle is reused and the CA is not contacted at all (no ARI),
		// so a run twice a day costs the CA nothing.
		if d := acme.Due(leaf, cert.RenewBefore, nil, time.Now()); !d.Due {
			e.note("%s: not due: %s (renew_before %s; the CA was not contacted)", cert.Name, d.Reason, cert.RenewBefore)
			e.note("%s: next renewal %s (renew_before)", cert.Name, d.RenewAt.UTC().Format(time.RFC3339))
			return d.RenewAt, nil
		}
	}
	client, err := e.acmeClient(ctx, cfg)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	res, err := client.CachedRenewalInfo(ctx, acme.ARIStatePath(cfg.StateDir, cert.Name), leaf, now)
	switch {
	case errors.Is(err, acme.ErrNoARI):
	case err != nil:
		e.log.Warn("renewal information unavailable; using the threshold", "cert", cert.Name, "error", err)
	case !res.Asked:
		e.log.Info("renewal information from the state directory", "cert", cert.Name, "ask_again_at", res.NextFetch.Format(time.RFC3339))
	}
	d := acme.Due(leaf, cert.RenewBefore, res.Window, now)
	if revoked {
		d.Due, d.Reason = true, fmt.Sprintf("revoked (%s) at %s", rv.Reason, rv.At.Format(time.RFC3339))
	}
	if !d.Due {
		e.note("%s: not due: %s", cert.Name, d.Reason)
		e.note("%s: next renewal %s (%s)", cert.Name, d.RenewAt.UTC().Format(time.RFC3339), dueSource(d, res))
		return d.RenewAt, nil
	}
	e.note("%s: renewing: %s", cert.Name, d.Reason)
	if beforeOrder != nil && now.Before(leaf.NotAfter) {
		defer beforeOrder()()
	}
	return e.obtainAndNext(ctx, client, cfg, cert, leaf)
}

// catchUp pushes the current bundle, before a renewal's order, to the
// hosts whose last push failed. A host back from an outage may serve an
// expired certificate: it gets the current one at once, not only after
// the order (which takes a while, or fails when the CA is down). Hosts
// still out of reach are tried again while the order runs, from every
// catchUpFirst up to every catchUpMax, so one that returns during a long
// order is not left serving an expired certificate until it ends. The
// returned function stops that and waits for a push under way; the push
// after the renewal brings every host the new certificate as usual.
func (e *env) catchUp(ctx context.Context, cfg *inventory.Config, name string, pf pushFlags) (stop func()) {
	stop = func() {}
	if pf.dryRun {
		return stop
	}
	st, err := loadFleetState(cfg.StateDir)
	if err != nil {
		e.log.Warn("read the push state", "error", err)
		return stop
	}
	only := hostList(pf.hosts)
	var behind []string
	for host, hs := range st[name] {
		if hs.LastResult == push.Failed && (len(only) == 0 || only[host]) {
			behind = append(behind, host)
		}
	}
	if len(behind) == 0 {
		return stop
	}
	sort.Strings(behind)
	e.note("%s: before the order, the current certificate to the hosts whose last push failed: %s", name, strings.Join(behind, ","))
	if behind = e.catchUpPush(ctx, cfg, name, pf, behind); len(behind) == 0 {
		return stop
	}
	// The order runs on this goroutine, the retries on another: they
	// share the output through a lock, and the retries show no progress.
	notes, stderr := e.notes, e.stderr
	e.notes, e.stderr = &lockedWriter{mu: e.out, w: notes}, &lockedWriter{mu: e.out, w: stderr}
	retry := *e
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wait := catchUpFirst; len(behind) > 0; wait = min(2*wait, catchUpMax) {
			select {
			case <-rctx.Done():
				return
			case <-time.After(wait):
			}
			behind = retry.catchUpPush(rctx, cfg, name, pf, behind)
		}
	}()
	return func() {
		cancel()
		<-done
		e.notes, e.stderr = notes, stderr
	}
}

// How often catchUp tries the hosts still behind while an order runs.
var catchUpFirst, catchUpMax = 2 * time.Second, 30 * time.Second

// catchUpPush pushes the current bundle of name to hosts and returns
// those that still failed. pushCert writes the deploy log; hosts.json and
// the metrics follow the push after the renewal.
func (e *env) catchUpPush(ctx context.Context, cfg *inventory.Config, name string, pf pushFlags, hosts []string) (failed []string) {
	pf.hosts = strings.Join(hosts, ",")
	rep, err := e.pushCert(ctx, cfg, name, pf)
	if err != nil {
		e.log.Warn("push the current certificate before the order", "cert", name, "error", err)
		return nil
	}
	for _, r := range rep.Results {
		if r.Result == push.Failed {
			failed = append(failed, r.Host)
		} else if r.OK() {
			e.note("%s: %s caught up with %s while the order runs", name, r.Host, rep.BundleID)
		}
	}
	return failed
}

// lockedWriter serializes writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// dueSource says where a renewal time comes from.
func dueSource(d acme.RenewalDecision, res acme.ARIResult) string {
	switch {
	case d.ARI && d.RenewAt.Equal(res.Window.Start) && res.Asked:
		return "start of the CA's renewal window"
	case d.ARI && d.RenewAt.Equal(res.Window.Start):
		return "start of the CA's renewal window; asked again after " + res.NextFetch.UTC().Format(time.RFC3339)
	}
	return "renewal threshold " + acme.Human(d.Threshold) + " before expiry"
}

// obtainAndNext obtains (with client, or a new one when nil) and returns
// when the new certificate is due by the threshold; the CA's window for
// it is asked on the next run.
func (e *env) obtainAndNext(ctx context.Context, client *acme.Client, cfg *inventory.Config, cert *inventory.Cert, replaces *x509.Certificate) (time.Time, error) {
	var err error
	if client == nil {
		if client, err = e.acmeClient(ctx, cfg); err != nil {
			return time.Time{}, err
		}
	}
	if err := e.obtainWith(ctx, client, cfg, cert, replaces); err != nil {
		return time.Time{}, err
	}
	cur, err := e.store(cfg).Current(cert.Name)
	if err != nil {
		return time.Time{}, err
	}
	leaf, err := cur.Leaf()
	if err != nil {
		return time.Time{}, err
	}
	d := acme.Due(leaf, cert.RenewBefore, nil, time.Now())
	e.note("%s: next renewal %s (renewal threshold %s before expiry, unless the CA's window says earlier)", cert.Name, d.RenewAt.UTC().Format(time.RFC3339), acme.Human(d.Threshold))
	return d.RenewAt, nil
}

func acmeCert(cfg *inventory.Config, name string) (*inventory.Cert, error) {
	cert, err := cfg.Cert(name)
	if err != nil {
		return nil, cli.Usage(err)
	}
	if cert.Challenge == nil {
		return nil, cli.Usagef("%s has no challenge in %s: it is not obtained over ACME (use import or the certbot hook)", name, cfg.Path)
	}
	return cert, nil
}

func (e *env) acmeClient(ctx context.Context, cfg *inventory.Config) (*acme.Client, error) {
	ac := acme.Config{
		Directory: cfg.ACME.Directory,
		Email:     cfg.ACME.Email,
		StateDir:  cfg.StateDir,
		UserAgent: "certpush/" + version,
		Logger:    e.log,
	}
	if cfg.ACME.CAFile != "" {
		data, err := os.ReadFile(cfg.ACME.CAFile)
		if err != nil {
			return nil, cli.Usagef("acme.ca_file: %v", err)
		}
		ac.CARoots = x509.NewCertPool()
		if !ac.CARoots.AppendCertsFromPEM(data) {
			return nil, cli.Usagef("acme.ca_file %s holds no PEM certificate", cfg.ACME.CAFile)
		}
	}
	if cfg.ACME.EAB != nil {
		ac.EAB = &acme.EAB{KID: cfg.ACME.EAB.KID, HMACKey: cfg.ACME.EAB.HMACKey}
	}
	c, err := acme.New(ctx, ac)
	if errors.Is(err, acme.ErrConfig) {
		return nil, cli.Usage(err)
	}
	return c, err
}

func (e *env) obtain(ctx context.Context, cfg *inventory.Config, cert *inventory.Cert, replaces *x509.Certificate) error {
	client, err := e.acmeClient(ctx, cfg)
	if err != nil {
		return err
	}
	return e.obtainWith(ctx, client, cfg, cert, replaces)
}

// obtainWith obtains a certificate for cert and makes it the current bundle.
func (e *env) obtainWith(ctx context.Context, client *acme.Client, cfg *inventory.Config, cert *inventory.Cert, replaces *x509.Certificate) error {
	ch := cert.Challenge
	req := acme.Request{
		Name:           cert.Name,
		Domains:        cert.Domains,
		KeyType:        firstNonEmpty(cert.KeyType, cfg.ACME.KeyType),
		PreferredChain: firstNonEmpty(cert.PreferredChain, cfg.ACME.PreferredChain),
		Profile:        firstNonEmpty(cert.Profile, cfg.ACME.Profile),
		ReplacesCert:   replaces,
		Challenge: acme.Challenge{
			Type:                    ch.Type,
			Provider:                ch.Provider,
			Resolvers:               ch.Resolvers,
			PropagationTimeout:      ch.PropagationTimeout,
			DisablePropagationCheck: cfg.ACME.DisablePropagationCheck,
			Mode:                    ch.Mode,
			Address:                 ch.Address,
			Wildcard:                ch.Wildcard,
			PersistUntil:            ch.PersistUntil,
			IssuerDomainName:        ch.IssuerDomainName,
		},
	}
	if ch.Type == acme.DNSPersist01 {
		req.Challenge.Records = func(recs []acme.PersistRecord) {
			e.note("%s: dns-persist-01: these TXT records must exist (create them once; they stay):", cert.Name)
			for _, r := range recs {
				e.note("  %s", r)
			}
		}
	}
	if len(req.Challenge.Resolvers) == 0 {
		req.Challenge.Resolvers = cfg.ACME.DNSResolvers
	}
	if req.Challenge.PropagationTimeout == 0 {
		req.Challenge.PropagationTimeout = cfg.ACME.PropagationTimeout
	}
	if ch.Type == acme.HTTP01 && ch.Mode == acme.ModeWebrootPush {
		hosts, err := cfg.HostsFor(cert.Name)
		if err != nil {
			return cli.Usage(err)
		}
		auth, closeAuth, err := push.Auth(cfg.SSH.Identity, e.getenv("SSH_AUTH_SOCK"))
		if err != nil {
			return cli.Usage(err)
		}
		defer closeAuth()
		dialer, err := push.NewDialer(auth, cfg.SSH.KnownHosts, cfg.SSH.ConnectTimeout, e.log)
		if err != nil {
			return cli.Usage(err)
		}
		req.Challenge.Publisher = &push.Webroot{Dialer: dialer, Hosts: hosts, Webroot: ch.Webroot, Parallel: cfg.SSH.Parallel}
	}
	if err := acme.CheckRequest(req); err != nil {
		return cli.Usage(err)
	}
	e.log.Info("obtaining certificate", "cert", cert.Name, "domains", cert.Domains, "challenge", ch.Type)
	got, err := client.Obtain(ctx, req)
	if err != nil {
		if errors.Is(err, acme.ErrConfig) || errors.Is(err, acme.ErrUnknownProfile) {
			return cli.Usage(err)
		}
		return fmt.Errorf("%s: obtain: %w", cert.Name, err)
	}
	if err := e.checkObtainedKey(cfg, cert.Name, got); err != nil {
		return fmt.Errorf("%s: %w; nothing was stored", cert.Name, err)
	}
	_, err = e.addBundle(ctx, cfg, cert, got.Cert, got.Chain, got.Key, bundle.SourceACME, false)
	return err
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkObtainedKey refuses a certificate whose key is the current one or a
// compromised one. Every obtain makes a new key; --new-key says so.
func (e *env) checkObtainedKey(cfg *inventory.Config, name string, got *acme.Certificate) error {
	m, err := bundle.ParseMaterial(got.Cert, got.Chain, got.Key)
	if err != nil {
		return err
	}
	leaf := m.Leaf
	var old *x509.Certificate
	if cur, err := e.store(cfg).Current(name); err == nil {
		old, _ = cur.Leaf()
	}
	revs, err := loadRevocations(cfg.StateDir)
	if err != nil {
		return err
	}
	if err := checkNewKey(revs, old, leaf); err != nil {
		return err
	}
	if e.newKey {
		e.note("%s: new private key (public key sha256 %s)", name, keySHA(leaf))
	}
	return nil
}
