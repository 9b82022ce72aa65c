package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/bounded"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
)

func (e *env) importCommand() *cli.Command {
	c := &cli.Command{
		Name:  "import",
		Args:  "NAME --cert FILE --key FILE",
		Short: "make a bundle from a certificate supplied by hand",
		Long:  "Make a bundle from a certificate supplied by hand. --cert may hold the full chain.\nIf the same certificate is already the current bundle, nothing new is made.",
	}
	certFile := c.Flags.String("cert", "", "certificate `file` (PEM; the leaf, or the full chain)")
	keyFile := c.Flags.String("key", "", "private key `file` (PEM)")
	chainFile := c.Flags.String("chain", "", "intermediate certificates `file` (PEM), if --cert holds the leaf alone")
	doPush := c.Flags.Bool("push", false, "push the bundle to the certificate's hosts afterwards")
	force := c.Flags.Bool("force", false, "make the certificate current even if it is older than the current bundle's")
	var pf pushFlags
	c.Flags.BoolVar(&pf.json, "json", false, "print push results as JSON (with --push)")
	pf.lock.register(&c.Flags)
	c.Run = func(ctx context.Context, names []string) error {
		e.quietly(pf)
		if len(names) != 1 || *certFile == "" || *keyFile == "" {
			return cli.Usagef("import takes one NAME, --cert and --key")
		}
		name := names[0]
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		cert, err := cfg.Cert(name)
		if err != nil {
			return cli.Usage(err)
		}
		read := func(path string) ([]byte, error) {
			if path == "" {
				return nil, nil
			}
			return readSmall(path)
		}
		certPEM, err := read(*certFile)
		if err != nil {
			return cli.Usage(err)
		}
		keyPEM, err := read(*keyFile)
		if err != nil {
			return cli.Usage(err)
		}
		chainPEM, err := read(*chainFile)
		if err != nil {
			return cli.Usage(err)
		}
		if _, err := e.addBundle(ctx, cfg, cert, certPEM, chainPEM, keyPEM, bundle.SourceImport, *force); err != nil {
			return err
		}
		if !*doPush {
			return nil
		}
		return e.pushNames(ctx, cfg, []string{name}, pf)
	}
	return c
}

// readSmall reads a PEM input file, refusing anything larger than a bundle
// file may be.
func readSmall(path string) ([]byte, error) {
	// certbot's live directory holds symlinks into its archive: follow
	// them, but never block on a FIFO.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return bounded.ReadRegular(f, path, bundle.MaxFileSize)
}

// addBundle validates the PEM material (it must cover the certificate's
// domains and extraDomains, and not be older than the current bundle
// unless allowOlder) and makes it the current bundle of cert.
func (e *env) addBundle(ctx context.Context, cfg *inventory.Config, cert *inventory.Cert, certPEM, chainPEM, keyPEM []byte, source string, allowOlder bool, extraDomains ...string) (_ *bundle.Bundle, err error) {
	mat, err := bundle.ParseMaterial(certPEM, chainPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cert.Name, &bundle.RefusedError{Err: err})
	}
	signer, err := bundle.LoadOrCreateSigner(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	b, created, err := e.store(cfg).Add(cert.Name, mat, bundle.AddOptions{
		Domains:    append(append([]string{}, cert.Domains...), extraDomains...),
		Source:     source,
		Signer:     signer,
		Now:        time.Now(),
		AllowOlder: allowOlder,
		Anchor:     cert.Anchor,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cert.Name, err)
	}
	m := b.Manifest
	if created {
		defer func() {
			if err == nil {
				err = e.autoPublish(ctx, cfg, cert.Name)
			}
		}()
		e.note("%s: new bundle %s (%s, expires %s)", cert.Name, m.ID, strings.Join(m.Domains, ", "), m.NotAfter.Format(time.DateOnly))
	} else {
		e.note("%s: unchanged: bundle %s already holds this certificate", cert.Name, m.ID)
	}
	return b, nil
}

// errNoLineage is the hook run outside certbot.
var errNoLineage = errors.New("RENEWED_LINEAGE is not set: 'certpush hook' is certbot's deploy hook (certbot --deploy-hook or /etc/letsencrypt/renewal-hooks/deploy/)")

func (e *env) hookCommand() *cli.Command {
	var pf pushFlags
	return e.pushing(&cli.Command{
		Name:  "hook",
		Short: "certbot deploy hook: bundle RENEWED_LINEAGE and push it",
		Long:  "certbot deploy hook: bundles the renewed lineage (RENEWED_LINEAGE)\nand pushes it to the certificate's hosts. The certificate name is the\nlineage's directory name.",
	}, &pf, func(ctx context.Context, names []string) error {
		lineage := e.getenv("RENEWED_LINEAGE")
		if lineage == "" {
			return cli.Usage(errNoLineage)
		}
		name := filepath.Base(filepath.Clean(lineage))
		cfg, unlock, err := e.lockedConfig(ctx, pf.lock)
		if err != nil {
			return err
		}
		defer unlock()
		cert, err := cfg.Cert(name)
		if err != nil {
			return cli.Usage(fmt.Errorf("lineage %s: %w", lineage, err))
		}
		// The live directory holds symlinks into archive/: read what they
		// point to, so the bundle holds the files' contents.
		var data [3][]byte
		for i, f := range []string{"cert.pem", "chain.pem", "privkey.pem"} {
			if data[i], err = readSmall(filepath.Join(lineage, f)); err != nil {
				return fmt.Errorf("read lineage: %w", err)
			}
		}
		// The names certbot renewed must be covered too.
		renewed := strings.Fields(e.getenv("RENEWED_DOMAINS"))
		if _, err := e.addBundle(ctx, cfg, cert, data[0], data[1], data[2], bundle.SourceCertbot, false, renewed...); err != nil {
			return err
		}
		err = e.pushNames(ctx, cfg, []string{name}, pf)
		if errors.Is(err, cli.ErrReported) {
			// certbot ignores the hook's exit status: say it plainly.
			fmt.Fprintf(e.stderr, "certpush: hook: some hosts did not get %s; certbot does not retry them: 'certpush sync' from a timer does\n", name)
		}
		return err
	})
}
