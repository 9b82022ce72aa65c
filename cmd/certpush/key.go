package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
)

func (e *env) keyCommand() *cli.Command {
	c := &cli.Command{
		Name:  "key",
		Args:  "show | rotate | retire",
		Short: "show, rotate or retire the bundle signing key",
		Long: `Manage the key that signs every bundle (certnode's trusted_keys).

  show    the signing keys and which keys signed each current bundle
  rotate  make a new signing key; the old one keeps signing beside it, and
          every current bundle gets the new key's signature too (its files
          and id stay the same, no new certificate is ordered)
  retire  end a rotation: the old key is deleted and signs no more

Rotating without a node left behind:
  1. certpush key rotate            (prints the new public key)
  2. add the new key to trusted_keys on every node, keeping the old one
     (nodes that trust only the old key keep accepting new bundles,
     which both keys sign)
  3. certpush push                  (rebuilt nodes that trust only the new
     key accept the current bundles)
  4. certpush key retire
  5. remove the old key from trusted_keys on every node
Every node needs a certnode that reads several signatures (this version or
later) before step 1.`,
	}
	var lf lockFlags
	lf.register(&c.Flags)
	c.Run = func(ctx context.Context, args []string) error {
		if len(args) != 1 {
			return cli.Usagef("key takes one of: show, rotate, retire")
		}
		verb := args[0]
		if verb != "show" && verb != "rotate" && verb != "retire" {
			return cli.Usagef("key %s: unknown; want show, rotate or retire", verb)
		}
		cfg, unlock, err := e.lockedConfig(ctx, lf)
		if err != nil {
			return err
		}
		defer unlock()
		switch verb {
		case "rotate":
			return e.rotateKey(cfg)
		case "retire":
			return e.retireKey(cfg)
		}
		return e.showKeys(cfg)
	}
	return c
}

func (e *env) rotateKey(cfg *inventory.Config) error {
	signer, err := bundle.RotateKey(cfg.StateDir)
	if err != nil {
		return err
	}
	keys := signer.PublicKeys()
	e.note("new signing key %s (0600): %s", filepath.Join(cfg.StateDir, bundle.SigningKeyFile), keys[0])
	e.note("old key %s still signs: %s", filepath.Join(cfg.StateDir, bundle.OldSigningKeyFile), keys[1])
	if err := e.resignAll(cfg, signer); err != nil {
		return err
	}
	e.note("\nNext:\n  1. on every node, certnode.yaml: %s\n  2. certpush push\n  3. certpush key retire, then remove %s from trusted_keys everywhere", trustedKeysLine(keys[1], keys[0]), keys[1])
	return nil
}

// trustedKeysLine is certnode.yaml's trusted_keys line for keys.
func trustedKeysLine(keys ...string) string {
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = strconv.Quote(k)
	}
	return "trusted_keys: [" + strings.Join(quoted, ", ") + "]"
}

// resignAll adds signer's missing signatures to the current bundle of
// every configured certificate.
func (e *env) resignAll(cfg *inventory.Config, signer *bundle.Signer) error {
	var errs []error
	for _, name := range cfg.Names() {
		b, changed, err := e.store(cfg).Resign(name, signer)
		switch {
		case errors.Is(err, bundle.ErrNoBundle):
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		case changed:
			e.note("%s: bundle %s re-signed (files unchanged)", name, b.Manifest.ID)
		}
	}
	return errors.Join(errs...)
}

func (e *env) retireKey(cfg *inventory.Config) error {
	old, err := bundle.RetireKey(cfg.StateDir)
	if err != nil {
		return err
	}
	if old == "" {
		return errors.New("no key rotation is under way: there is no old key to retire (certpush key rotate starts one)")
	}
	signer, err := bundle.LoadSigner(cfg.StateDir)
	if err != nil {
		return err
	}
	e.note("retired the old signing key %s: new bundles are signed by %s only", old, signer.PublicKey())
	e.note("remove %s from trusted_keys on every node", old)
	return nil
}

func (e *env) showKeys(cfg *inventory.Config) error {
	signer, err := bundle.LoadSigner(cfg.StateDir)
	if err != nil {
		return err
	}
	keys := signer.PublicKeys()
	fmt.Fprintf(e.stdout, "signing key: %s\n", keys[0])
	if len(keys) > 1 {
		fmt.Fprintf(e.stdout, "old key:     %s (rotation under way: still signs until certpush key retire)\n", keys[1])
	}
	for _, name := range cfg.Names() {
		b, err := e.store(cfg).Current(name)
		if errors.Is(err, bundle.ErrNoBundle) {
			fmt.Fprintf(e.stdout, "%s: no bundle yet\n", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		signed := b.Manifest.SigningKeys()
		var missing []string
		for _, k := range keys {
			if !slices.Contains(signed, k) {
				missing = append(missing, k)
			}
		}
		line := fmt.Sprintf("%s: bundle %s signed by %s", name, b.Manifest.ID, strings.Join(signed, ", "))
		if len(missing) > 0 {
			line += "; not by " + strings.Join(missing, ", ") + " (the next push adds them)"
		}
		fmt.Fprintln(e.stdout, line)
	}
	return nil
}
