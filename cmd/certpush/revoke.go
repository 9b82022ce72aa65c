package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/acme"
	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
)

// revocation is one certificate certpush had the CA revoke, in
// <state_dir>/revoked.json.
type revocation struct {
	Serial string    `json:"serial"`
	Reason string    `json:"reason"`
	KeySHA string    `json:"key_sha256"` // SHA-256 of the public key (SPKI)
	At     time.Time `json:"revoked_at"`
}

type revocations map[string][]revocation // cert name -> revocations

func revokedPath(stateDir string) string { return filepath.Join(stateDir, "revoked.json") }

func loadRevocations(stateDir string) (revocations, error) {
	data, err := os.ReadFile(revokedPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return revocations{}, nil
	}
	if err != nil {
		return nil, err
	}
	r := revocations{}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", revokedPath(stateDir), err)
	}
	return r, nil
}

func (r revocations) save(stateDir string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(revokedPath(stateDir), append(data, '\n'), 0o600)
}

// compromised returns the latest keyCompromise revocation of name, if any.
func (r revocations) compromised(name string) (revocation, bool) {
	for i := len(r[name]) - 1; i >= 0; i-- {
		if r[name][i].Reason == "keyCompromise" {
			return r[name][i], true
		}
	}
	return revocation{}, false
}

// revoked reports whether cert (its serial) was revoked.
func (r revocations) revoked(name string, cert *x509.Certificate) (revocation, bool) {
	serial := cert.SerialNumber.Text(16)
	for _, rv := range r[name] {
		if rv.Serial == serial {
			return rv, true
		}
	}
	return revocation{}, false
}

// compromisedKey reports whether cert's key is one revoked for key
// compromise under any name.
func (r revocations) compromisedKey(cert *x509.Certificate) bool {
	sum := keySHA(cert)
	for _, list := range r {
		for _, rv := range list {
			if rv.Reason == "keyCompromise" && rv.KeySHA == sum {
				return true
			}
		}
	}
	return false
}

func keySHA(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func reasonNames() string {
	names := make([]string, 0, len(acme.RevocationReasons))
	for n := range acme.RevocationReasons {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, "|")
}

func (e *env) revokeCommand() *cli.Command {
	var (
		lock   lockFlags
		reason string
	)
	c := &cli.Command{
		Name:  "revoke",
		Args:  "NAME",
		Short: "have the CA revoke the current certificate of NAME",
		Long: `Ask the ACME CA to revoke the current certificate of NAME (obtained over
ACME with this account). After a key compromise use --reason keyCompromise,
then 'certpush obtain NAME --new-key' and 'certpush push NAME --emergency'
(docs/acme.md has the whole procedure). The hosts keep serving the revoked
certificate until the new one is pushed.`,
	}
	lock.register(&c.Flags)
	c.Flags.StringVar(&reason, "reason", "unspecified", "revocation `reason`: "+reasonNames())
	c.Run = func(ctx context.Context, names []string) error {
		if len(names) != 1 {
			return cli.Usagef("revoke takes one certificate NAME")
		}
		code, ok := acme.RevocationReasons[reason]
		if !ok {
			return cli.Usagef("--reason %q: want one of %s", reason, strings.ReplaceAll(reasonNames(), "|", ", "))
		}
		cfg, unlock, err := e.lockedConfig(ctx, lock)
		if err != nil {
			return err
		}
		defer unlock()
		cert, err := acmeCert(cfg, names[0])
		if err != nil {
			return err
		}
		cur, err := e.store(cfg).Current(cert.Name)
		if err != nil {
			return cli.Usage(err)
		}
		leaf, err := cur.Leaf()
		if err != nil {
			return err
		}
		certPEM, err := cur.ReadFile(bundle.CertFile)
		if err != nil {
			return err
		}
		revs, err := loadRevocations(cfg.StateDir)
		if err != nil {
			return err
		}
		if rv, done := revs.revoked(cert.Name, leaf); done {
			return cli.Usagef("%s: certificate %s was revoked already (%s, %s)", cert.Name, rv.Serial, rv.Reason, rv.At.Format(time.RFC3339))
		}
		client, err := e.acmeClient(ctx, cfg)
		if err != nil {
			return err
		}
		if err := client.Revoke(ctx, certPEM, code); err != nil {
			return fmt.Errorf("%s: %w", cert.Name, err)
		}
		revs[cert.Name] = append(revs[cert.Name], revocation{Serial: leaf.SerialNumber.Text(16), Reason: reason, KeySHA: keySHA(leaf), At: time.Now().UTC()})
		if err := revs.save(cfg.StateDir); err != nil {
			return err
		}
		// The CA's renewal window for a revoked certificate is now; ask
		// it again on the next renew.
		os.Remove(acme.ARIStatePath(cfg.StateDir, cert.Name))
		fmt.Fprintf(e.stdout, "%s: certificate %s revoked (%s)\n", cert.Name, leaf.SerialNumber.Text(16), reason)
		if reason == "keyCompromise" {
			fmt.Fprintf(e.stdout, "next: certpush obtain %s --new-key --no-push && certpush push %s --emergency\n", cert.Name, cert.Name)
		} else {
			fmt.Fprintf(e.stdout, "next: certpush obtain %s (the hosts serve the revoked certificate until then)\n", cert.Name)
		}
		return nil
	}
	return c
}

// checkNewKey refuses a new certificate whose key is the current one or
// one revoked for key compromise.
func checkNewKey(revs revocations, old, got *x509.Certificate) error {
	if old != nil && slices.Equal(old.RawSubjectPublicKeyInfo, got.RawSubjectPublicKeyInfo) {
		return errors.New("the new certificate has the current certificate's key")
	}
	if revs.compromisedKey(got) {
		return errors.New("the new certificate's key was revoked for key compromise")
	}
	return nil
}

// checkProfileLimits applies what the CA documents about each ACME
// certificate's profile (acme.CheckProfileLimits).
func checkProfileLimits(cfg *inventory.Config) error {
	for _, n := range cfg.CertOrder {
		c := cfg.Certs[n]
		if c.Challenge == nil {
			continue
		}
		if err := acme.CheckProfileLimits(cfg.ACME.Directory, firstNonEmpty(c.Profile, cfg.ACME.Profile), c.Domains); err != nil {
			return fmt.Errorf("%s: certs.%s: %w", cfg.Path, n, err)
		}
	}
	return nil
}
