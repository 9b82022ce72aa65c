package testfleet

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
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

// selfSigned makes a self-signed ECDSA certificate for domains, valid from a
// few minutes ago for validity.
func selfSigned(domains []string, validity time.Duration, now time.Time) (*bundle.Material, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domains[0], Organization: []string{"certpush test fleet bootstrap"}},
		DNSNames:              domains,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	mat, err := bundle.ParseMaterial(certPEM, nil, keyPEM)
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
