package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/hooks"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/cli"
	"github.com/certpush/certpush/internal/inventory"
)

func (e *env) initCommand() *cli.Command {
	c := &cli.Command{
		Name:  "init",
		Short: "create the state directory and signing key; print what each node needs",
		Long: `Create the state directory (0700) and the bundle signing key, if they are
not there yet (an existing key is kept), and print what every node needs
before the first push: the trusted_keys line for certnode.yaml, the
authorized_keys line for the push account with the forced command, and
the sudoers rule. Safe to run again.`,
	}
	var lf lockFlags
	lf.register(&c.Flags)
	c.Run = func(ctx context.Context, args []string) error {
		if len(args) != 0 {
			return cli.Usagef("init takes no arguments")
		}
		cfg, unlock, err := e.lockedConfig(ctx, lf)
		if err != nil {
			return err
		}
		defer unlock()
		keyPath := filepath.Join(cfg.StateDir, bundle.SigningKeyFile)
		_, statErr := os.Stat(keyPath)
		signer, err := bundle.LoadOrCreateSigner(cfg.StateDir)
		if err != nil {
			return err
		}
		if errors.Is(statErr, fs.ErrNotExist) {
			e.note("created signing key %s (0600)", keyPath)
		} else {
			e.note("signing key %s exists: kept", keyPath)
		}
		e.note("\nOn every node:\n\n  /etc/certnode/certnode.yaml:\n    %s", trustedKeysLine(signer.PublicKeys()...))
		e.note("\n  /etc/ssh/authorized_keys/certsync (root-owned, 0644; see hooks/sshd_config.certpush):\n    restrict,command=%q %s", hooks.ForcedCommand(), e.pushKey(cfg))
		e.note("\n  /etc/sudoers.d/certnode (0440; check with visudo -cf):\n    %s", strings.ReplaceAll(hooks.SudoersRule(), "\n", "\n    "))
		e.note("\nand in %s, for each such host: command: certnode", cfg.Path)
		return nil
	}
	return c
}

// pushKey is the public key of the push identity in authorized_keys
// form, or what to run to make one.
func (e *env) pushKey(cfg *inventory.Config) string {
	id := cfg.SSH.Identity
	if id == "" {
		return "<the public key your ssh-agent offers>"
	}
	if data, err := os.ReadFile(id + ".pub"); err == nil {
		if k, comment, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
			return strings.TrimSpace(strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k))) + " " + comment)
		}
	}
	if data, err := os.ReadFile(id); err == nil {
		if s, err := ssh.ParsePrivateKey(data); err == nil {
			return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
		}
	}
	return fmt.Sprintf("<public key of %s: make it with ssh-keygen -t ed25519 -N '' -f %s>", id, id)
}
