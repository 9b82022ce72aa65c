package testfleet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

// writeSSHKey creates a new Ed25519 key at path (OpenSSH PEM, mode 0600 from
// creation, replacing any file there) and returns its public half.
func writeSSHKey(path, comment string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	if err := atomicfile.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("write key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	return sshPub, nil
}

// bootstrapMaterial makes the certificate a host serves before its first
// push: issued by the fleet's CA for domains, valid from a few minutes ago
// for validity.
func bootstrapMaterial(ca *devca.CA, domains []string, validity time.Duration, now time.Time) (*bundle.Material, error) {
	is, err := ca.Issue(devca.Leaf{Domains: domains, NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(validity)})
	if err != nil {
		return nil, fmt.Errorf("bootstrap certificate: %w", err)
	}
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		return nil, fmt.Errorf("parse bootstrap certificate: %w", err)
	}
	return mat, nil
}

// installBootstrap writes mat as a signed bundle into a certnode root, the
// way certnode installs one: root/archive/NAME/ID/ and the symlink
// root/live/NAME -> ../archive/NAME/ID. It returns the bundle id.
func installBootstrap(root, name string, domains []string, mat *bundle.Material, signer *bundle.Signer, now time.Time) (string, error) {
	if err := mat.Validate(domains, now); err != nil {
		return "", fmt.Errorf("bootstrap certificate: %w", err)
	}
	m := bundle.NewManifest(name, mat, bundle.SourceImport, now)
	if err := signer.Sign(m); err != nil {
		return "", fmt.Errorf("sign bootstrap manifest: %w", err)
	}
	archive := filepath.Join(root, "archive", name)
	live := filepath.Join(root, "live")
	for _, d := range []string{archive, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	if err := bundle.Write(filepath.Join(archive, m.ID), mat, m); err != nil {
		return "", fmt.Errorf("write bootstrap bundle: %w", err)
	}
	if err := os.Symlink(filepath.Join("..", "archive", name, m.ID), filepath.Join(live, name)); err != nil {
		return "", fmt.Errorf("link bootstrap bundle: %w", err)
	}
	return m.ID, nil
}
