package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certpush/certpush/internal/acme"
	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/pull"
	"github.com/certpush/certpush/internal/store"
)

// renewLeased is renew --lease: for each certificate, take its lease in
// the store; the winner decides from the store's current certificate
// whether it is due, renews with the ACME account shared through the
// store, publishes fenced on what current was when it took the lease,
// and releases. The others see the lease held and do nothing.
func (e *env) renewLeased(ctx context.Context, cfg *inventory.Config, certs []*inventory.Cert, ttl time.Duration) error {
	if cfg.Store == nil {
		return cli.Usagef("renew --lease needs a store section in %s", cfg.Path)
	}
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return cli.Usage(err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	if err := pull.ProbeConditional(ctx, st, host); err != nil {
		return fmt.Errorf("renew --lease refused: %w", err)
	}
	holder := fmt.Sprintf("%s/%d", host, os.Getpid())
	var failed []error
	for _, cert := range certs {
		if err := e.renewUnderLease(ctx, cfg, st, cert, holder, ttl); err != nil {
			if _, ok := errors.AsType[*cli.UsageError](err); ok {
				return err
			}
			fmt.Fprintf(e.stderr, "certpush: %s: renew failed: %v\n", cert.Name, err)
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return cli.ErrReported
	}
	return nil
}

func (e *env) renewUnderLease(ctx context.Context, cfg *inventory.Config, st store.Store, cert *inventory.Cert, holder string, ttl time.Duration) error {
	l, lctx, err := pull.TakeLease(ctx, st, cert.Name, pull.LeaseOptions{Holder: holder, TTL: ttl, Logger: e.log})
	if he, ok := errors.AsType[*pull.HeldError](err); ok {
		e.note("%s: lease held by %s until %s: nothing to do", cert.Name, he.Holder, he.Expires.Local().Format(time.DateTime))
		return nil
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Release(ctx); err != nil {
			e.log.Warn("release lease", "cert", cert.Name, "error", err)
		}
	}()
	e.log.Info("lease taken", "cert", cert.Name, "holder", holder)
	leaf, err := currentLeaf(lctx, st, cert.Name)
	if err != nil {
		return err
	}
	if err := importAccount(lctx, st, cfg); err != nil {
		return err
	}
	client, err := e.acmeClient(lctx, cfg)
	if err != nil {
		return err
	}
	if leaf != nil {
		ari, err := client.RenewalInfo(lctx, leaf)
		if err != nil && !errors.Is(err, acme.ErrNoARI) {
			e.log.Warn("renewal information unavailable; using the threshold", "cert", cert.Name, "error", err)
		}
		d := acme.Due(leaf, cert.RenewBefore, ari, time.Now())
		if !d.Due {
			e.note("%s: not due: %s", cert.Name, d.Reason)
			return exportAccount(lctx, st, cfg)
		}
		e.note("%s: renewing: %s", cert.Name, d.Reason)
	} else {
		e.note("%s: nothing in the store yet: obtaining one", cert.Name)
	}
	// Publishing after the new bundle is fenced on the lease.
	if e.fences == nil {
		e.fences = map[string]string{}
	}
	e.fences[cert.Name] = l.Fence
	defer delete(e.fences, cert.Name)
	if err := e.obtainWith(lctx, client, cfg, cert, leaf); err != nil {
		if lerr := l.Err(); lerr != nil {
			return fmt.Errorf("%w (%v)", lerr, err)
		}
		return err
	}
	return exportAccount(lctx, st, cfg)
}

// currentLeaf is the leaf certificate current names in the store, or nil
// when nothing is published.
func currentLeaf(ctx context.Context, st store.Store, name string) (*x509.Certificate, error) {
	o, err := st.Get(ctx, store.CurrentKey(name), "", store.MaxObject)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// Unverified is fine here: it only decides whether to renew.
	ptr, err := store.ParsePointer(o.Data, name, nil)
	if err != nil {
		return nil, nil
	}
	c, err := st.Get(ctx, store.FileKey(name, ptr.ID, bundle.CertFile), "", bundle.MaxFileSize)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(c.Data)
	if block == nil {
		return nil, fmt.Errorf("%s: current certificate in the store is not PEM", name)
	}
	return x509.ParseCertificate(block.Bytes)
}

// The shared ACME account travels as the files of <state>/acme, encrypted
// to the store's recipients.
type accountArchive struct {
	Files map[string][]byte `json:"files"` // path under <state>/acme
}

// importAccount writes the store's shared account into the state
// directory, when there is one.
func importAccount(ctx context.Context, st store.Store, cfg *inventory.Config) error {
	o, err := st.Get(ctx, store.AccountKey, "", store.MaxObject)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.Store.Identity == "" {
		return cli.Usagef("%s: store.identity is missing: renew --lease decrypts the shared ACME account with it", cfg.Path)
	}
	ids, err := store.LoadIdentity(cfg.Store.Identity)
	if err != nil {
		return cli.Usage(err)
	}
	plain, err := store.Decrypt(o.Data, ids, store.MaxObject)
	if err != nil {
		return fmt.Errorf("shared ACME account: %w", err)
	}
	defer clear(plain)
	var a accountArchive
	if err := json.Unmarshal(plain, &a); err != nil {
		return fmt.Errorf("shared ACME account: %w", err)
	}
	base := filepath.Join(cfg.StateDir, "acme")
	for rel, data := range a.Files {
		p := filepath.Join(base, filepath.Clean("/"+rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// exportAccount puts the state directory's account into the store, once
// (create-only: the first candidate's account is everyone's).
func exportAccount(ctx context.Context, st store.Store, cfg *inventory.Config) error {
	base := filepath.Join(cfg.StateDir, "acme")
	a := accountArchive{Files: map[string][]byte{}}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		a.Files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if errors.Is(err, fs.ErrNotExist) || len(a.Files) == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	plain, _ := json.Marshal(a)
	enc, err := store.Encrypt(plain, cfg.Store.Recipients)
	clear(plain)
	if err != nil {
		return err
	}
	if _, err := st.Create(ctx, store.AccountKey, enc); err != nil && !errors.Is(err, store.ErrPrecondition) {
		return fmt.Errorf("share ACME account: %w", err)
	}
	return nil
}
