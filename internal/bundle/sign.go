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
	"slices"
	"strings"

	"github.com/certpush/certpush/internal/atomicfile"
)

// Signer signs manifests with an Ed25519 key and, during a key rotation,
// with the key it replaces as well.
type Signer struct {
	keys []ed25519.PrivateKey // the current key first
}

// NewSigner wraps an Ed25519 private key and any keys that co-sign with
// it (the old key during a rotation).
func NewSigner(key ed25519.PrivateKey, cosigners ...ed25519.PrivateKey) *Signer {
	s := &Signer{keys: []ed25519.PrivateKey{key}}
	for _, k := range cosigners {
		if !slices.ContainsFunc(s.keys, func(e ed25519.PrivateKey) bool { return e.Equal(k) }) {
			s.keys = append(s.keys, k)
		}
	}
	return s
}

// PublicKey returns the base64 encoding of the current public key, the
// form that certnode's trusted_keys takes.
func (s *Signer) PublicKey() string { return publicKey(s.keys[0]) }

// PublicKeys returns every key that signs, the current one first.
func (s *Signer) PublicKeys() []string {
	var out []string
	for _, k := range s.keys {
		out = append(out, publicKey(k))
	}
	return out
}

func publicKey(k ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
}

// Sign replaces m's signatures with one by each of the signer's keys.
func (s *Signer) Sign(m *Manifest) error {
	m.SigningKey, m.Signature, m.Signatures = "", "", nil
	_, err := s.AddSignatures(m)
	return err
}

// AddSignatures adds a signature by each of the signer's keys that has not
// signed m yet and reports whether it added any. The signatures m already
// carries stay as they are: each covers only the manifest and its own key.
func (s *Signer) AddSignatures(m *Manifest) (bool, error) {
	have := m.SigningKeys()
	added := false
	for _, k := range s.keys {
		pub := publicKey(k)
		if slices.Contains(have, pub) {
			continue
		}
		if len(have) >= MaxSignatures {
			return added, fmt.Errorf("manifest %s already carries %d signatures", m.ID, len(have))
		}
		msg, err := m.signedBytes(pub)
		if err != nil {
			return added, err
		}
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg))
		if m.Signature == "" {
			m.SigningKey, m.Signature = pub, sig
		} else {
			m.Signatures = append(m.Signatures, Signature{pub, sig})
		}
		have = append(have, pub)
		added = true
	}
	return added, nil
}

// Files of the signing keys in the state directory: the current key, and
// during a rotation the old one, which still signs until it is retired.
// Each has its public key beside it (.pub instead of .key), in the form
// certnode's trusted_keys takes.
const (
	SigningKeyFile    = "signing.key"
	OldSigningKeyFile = "signing.old.key"
)

// pubFile is the public key file that goes with a key file.
func pubFile(keyFile string) string { return strings.TrimSuffix(keyFile, ".key") + ".pub" }

// ErrNoSigningKey says that the state directory has no signing key yet.
var ErrNoSigningKey = errors.New("no signing key")

// LoadOrCreateSigner reads the signing key from dir/signing.key, creating it
// (mode 0600 from creation) on first use, and the old key of a rotation
// under way (dir/signing.old.key), which co-signs. It also keeps
// dir/signing.pub, the public key in the form certnode's trusted_keys
// takes.
func LoadOrCreateSigner(dir string) (*Signer, error) {
	s, err := LoadSigner(dir)
	if errors.Is(err, ErrNoSigningKey) {
		return createSigner(dir)
	}
	return s, err
}

// LoadSigner is LoadOrCreateSigner without the creating: it fails with
// ErrNoSigningKey when dir has no signing key.
func LoadSigner(dir string) (*Signer, error) {
	key, err := readKey(filepath.Join(dir, SigningKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s (certpush init makes one)", ErrNoSigningKey, dir)
	}
	if err != nil {
		return nil, err
	}
	old, err := readKey(filepath.Join(dir, OldSigningKeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return NewSigner(key), nil
	case err != nil:
		return nil, err
	}
	return NewSigner(key, old), nil
}

// readKey reads an Ed25519 private key from a PEM file that only its
// owner may read.
func readKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
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
	return ek, nil
}

// writeKey writes key to dir/file (0600 from creation) and its public key
// beside it (0644).
func writeKey(dir, file string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := atomicfile.WriteFile(filepath.Join(dir, file), pemData, 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, pubFile(file)), []byte(publicKey(key)+"\n"), 0o644); err != nil {
		return fmt.Errorf("write signing public key: %w", err)
	}
	return nil
}

func createSigner(dir string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(dir, SigningKeyFile, key); err != nil {
		return nil, err
	}
	return NewSigner(key), nil
}

// ErrRotating says that a rotation is under way: the old key has not been
// retired yet.
var ErrRotating = errors.New("a key rotation is under way")

// RotateKey makes a new signing key in dir. The current key becomes the
// old key (signing.old.key), which keeps co-signing until RetireKey, so
// nodes that trust only it keep accepting new bundles. It refuses while
// an earlier rotation is not retired. A crash part-way leaves either the
// old state or the new one (the old key is copied before the new one
// replaces it; a copy equal to the current key is no rotation, as
// NewSigner drops a co-signer equal to the key).
func RotateKey(dir string) (*Signer, error) {
	s, err := LoadSigner(dir)
	if err != nil {
		return nil, err
	}
	if len(s.keys) > 1 {
		return nil, fmt.Errorf("%w: the old key %s still signs; retire it first (certpush key retire) once every node trusts %s",
			ErrRotating, publicKey(s.keys[1]), s.PublicKey())
	}
	cur := s.keys[0]
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(dir, OldSigningKeyFile, cur); err != nil {
		return nil, err
	}
	if err := writeKey(dir, SigningKeyFile, key); err != nil {
		return nil, err
	}
	return NewSigner(key, cur), nil
}

// RetireKey ends a rotation: the old key is deleted and signs no more. It
// returns the old public key, or "" when no rotation was under way.
func RetireKey(dir string) (string, error) {
	path := filepath.Join(dir, OldSigningKeyFile)
	old, err := readKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("retire signing key: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, pubFile(OldSigningKeyFile))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("retire signing key: %w", err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return "", err
	}
	return publicKey(old), nil
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
