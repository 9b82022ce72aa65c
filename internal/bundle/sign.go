package bundle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/certpush/certpush/internal/atomicfile"
)

// Signer signs manifests with an Ed25519 key.
type Signer struct {
	key ed25519.PrivateKey
}

// NewSigner wraps an Ed25519 private key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// PublicKey returns the base64 encoding of the public key, the form that
// certnode's trusted_keys takes.
func (s *Signer) PublicKey() string {
	return base64.StdEncoding.EncodeToString(s.key.Public().(ed25519.PublicKey))
}

// Sign fills in m.SigningKey and m.Signature.
func (s *Signer) Sign(m *Manifest) error {
	m.SigningKey = s.PublicKey()
	msg, err := m.SignedBytes()
	if err != nil {
		return err
	}
	m.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, msg))
	return nil
}

// SigningKeyFile is the name of the signing key in the state directory.
const SigningKeyFile = "signing.key"

// LoadOrCreateSigner reads the signing key from dir/signing.key, creating it
// (mode 0600 from creation) on first use. It also keeps dir/signing.pub, the
// public key in the form certnode's trusted_keys takes.
func LoadOrCreateSigner(dir string) (*Signer, error) {
	path := filepath.Join(dir, SigningKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSigner(dir, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s has mode %v: it must not be readable by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not an Ed25519 key", path)
	}
	return &Signer{key: ek}, nil
}

func createSigner(dir, path string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	s := &Signer{key: key}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := atomicfile.WriteFile(path, pemData, 0o600); err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "signing.pub"), []byte(s.PublicKey()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("write signing public key: %w", err)
	}
	return s, nil
}

// ParsePublicKey decodes a trusted key as written in signing.pub or in
// certnode's trusted_keys: base64 of the 32-byte Ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("trusted key %q is not a base64 Ed25519 public key", s)
	}
	return ed25519.PublicKey(b), nil
}
