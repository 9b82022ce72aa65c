package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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
		if err := e.obtain(ctx, cfg, cert, nil); err != nil {
			return err
		}
		if noPush {
			return nil
		}
		return e.pushNames(ctx, cfg, []string{cert.Name}, pf)
	})
	c.Flags.BoolVar(&noPush, "no-push", false, "make the bundle but do not push it")
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
		if cert.Challenge != nil {
			if err := e.renewOne(ctx, cfg, cert); err != nil {
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
lifetime), or inside the CA's renewal window (ARI). A valid certificate is
never re-issued. Then push every named certificate to the hosts that do
not have it yet, so hosts that failed before are retried.
Safe to run from cron or a systemd timer every few hours.`,
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

// renewOne obtains a new certificate for cert when it is due.
func (e *env) renewOne(ctx context.Context, cfg *inventory.Config, cert *inventory.Cert) error {
	cur, err := e.store(cfg).Current(cert.Name)
	if errors.Is(err, bundle.ErrNoBundle) {
		e.note("%s: no certificate yet: obtaining one", cert.Name)
		return e.obtain(ctx, cfg, cert, nil)
	}
	if err != nil {
		return err
	}
	leaf, err := cur.Leaf()
	if err != nil {
		return err
	}
	client, err := e.acmeClient(ctx, cfg)
	if err != nil {
		return err
	}
	ari, err := client.RenewalInfo(ctx, leaf)
	if err != nil && !errors.Is(err, acme.ErrNoARI) {
		e.log.Warn("renewal information unavailable; using the threshold", "cert", cert.Name, "error", err)
	}
	d := acme.Due(leaf, cert.RenewBefore, ari, time.Now())
	if !d.Due {
		e.note("%s: not due: %s", cert.Name, d.Reason)
		return nil
	}
	e.note("%s: renewing: %s", cert.Name, d.Reason)
	return e.obtainWith(ctx, client, cfg, cert, leaf)
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
		ReplacesCert:   replaces,
		Challenge: acme.Challenge{
			Type:                    ch.Type,
			Provider:                ch.Provider,
			Resolvers:               ch.Resolvers,
			PropagationTimeout:      ch.PropagationTimeout,
			DisablePropagationCheck: cfg.ACME.DisablePropagationCheck,
			Mode:                    ch.Mode,
			Address:                 ch.Address,
		},
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
		if errors.Is(err, acme.ErrConfig) {
			return cli.Usage(err)
		}
		return fmt.Errorf("%s: obtain: %w", cert.Name, err)
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
