// Package bundle turns a certificate, its chain and its private key into an
// immutable, validated, hashed and signed directory, and reads such
// directories back.
//
// A bundle directory holds cert.pem, chain.pem, fullchain.pem, privkey.pem
// (mode 0600 from creation) and manifest.json. Its id is derived from the
// leaf certificate, so the same certificate always gives the same id.
package bundle

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/wire"
)

// File names inside a bundle directory.
const (
	CertFile      = "cert.pem"
	ChainFile     = "chain.pem"
	FullchainFile = "fullchain.pem"
	KeyFile       = "privkey.pem"
	ManifestFile  = "manifest.json"
)

// Files lists the payload files of a bundle, in the order they are written.
var Files = []string{CertFile, ChainFile, FullchainFile, KeyFile}

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

// MaxFileSize bounds every file of a bundle, manifest included. Real
// certificate chains and keys are a few KiB; anything larger is refused.
const MaxFileSize = 256 << 10

// Sources of a bundle.
const (
	SourceACME    = "acme"
	SourceCertbot = "certbot"
	SourceImport  = "import"
	// SourcePlaceholder marks the self-signed certificate certnode
	// bootstrap installs so that a web server can start before the first
	// real certificate arrives.
	SourcePlaceholder = "placeholder"
)

// FileInfo is the size and SHA-256 (lowercase hex) of one bundle file.
type FileInfo struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Manifest describes a bundle. It is stored as manifest.json and signed
// with the management server's Ed25519 key.
type Manifest struct {
	Version     int                 `json:"version"`
	Name        string              `json:"name"`
	ID          string              `json:"id"`
	Domains     []string            `json:"domains"`
	Serial      string              `json:"serial"`
	NotBefore   time.Time           `json:"not_before"`
	NotAfter    time.Time           `json:"not_after"`
	Issuer      string              `json:"issuer"`
	Fingerprint string              `json:"fingerprint_sha256"`
	KeyType     string              `json:"key_type"`
	Files       map[string]FileInfo `json:"files"`
	Created     time.Time           `json:"created"`
	Source      string              `json:"source"`
	// SigningKey is the base64 Ed25519 public key that made Signature.
	SigningKey string `json:"signing_key,omitempty"`
	// Signature is the base64 Ed25519 signature of the manifest encoded
	// with Signature empty (see SignedBytes).
	Signature string `json:"signature,omitempty"`
	// Signatures are more signatures of the same manifest, by other keys
	// (during a key rotation, the old key's and the new one's). Each
	// covers SignedBytes for its own key; adding one leaves the others
	// valid, so a bundle's files never change.
	Signatures []Signature `json:"signatures,omitempty"`
}

// Signature is one more signature of a manifest.
type Signature struct {
	SigningKey string `json:"signing_key"`
	Signature  string `json:"signature"`
}

// MaxSignatures bounds the signatures one manifest may carry.
const MaxSignatures = 8

// Errors returned when a manifest or bundle does not verify.
var (
	ErrUnsigned         = errors.New("bundle is not signed")
	ErrUntrustedKey     = errors.New("bundle is signed by an untrusted key")
	ErrBadSignature     = errors.New("bundle signature does not verify")
	ErrHashMismatch     = errors.New("bundle file does not match its manifest")
	ErrManifestMismatch = errors.New("manifest does not describe the certificate")
)

// SignedBytes returns the bytes the signature covers: the manifest encoded
// as JSON with the Signature field empty.
func (m *Manifest) SignedBytes() ([]byte, error) {
	return m.signedBytes(m.SigningKey)
}

// signedBytes is what the signature by key covers: the manifest encoded as
// JSON with key as SigningKey and no signatures. For the first signature
// that is SignedBytes.
func (m *Manifest) signedBytes(key string) ([]byte, error) {
	c := *m
	c.SigningKey = key
	c.Signature = ""
	c.Signatures = nil
	return json.Marshal(&c)
}

// signatures lists every signature the manifest carries, the first one
// first.
func (m *Manifest) signatures() []Signature {
	var all []Signature
	if m.SigningKey != "" && m.Signature != "" {
		all = append(all, Signature{m.SigningKey, m.Signature})
	}
	return append(all, m.Signatures...)
}

// SigningKeys lists the keys that signed the manifest, as base64.
func (m *Manifest) SigningKeys() []string {
	var keys []string
	for _, s := range m.signatures() {
		keys = append(keys, s.SigningKey)
	}
	return keys
}

// ParseManifest decodes manifest.json strictly: unknown fields, trailing
// data, a wrong format version or missing fields are errors.
func ParseManifest(data []byte) (*Manifest, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("manifest is %d bytes, larger than the %d allowed", len(data), MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("parse manifest: %s", decodeProblem(err))
	}
	if dec.More() {
		return nil, errors.New("parse manifest: trailing data after the JSON object")
	}
	if m.Version != FormatVersion {
		return nil, fmt.Errorf("parse manifest: format version %d, want %d", m.Version, FormatVersion)
	}
	if err := ValidName(m.Name); err != nil {
		return nil, errors.New("parse manifest: certificate name is not valid: only letters, digits, '.', '-' and '_' are allowed, not first '.' or '-'")
	}
	if !wire.ValidID(m.ID) {
		return nil, errors.New("parse manifest: bad bundle id: want 16 lowercase hex digits")
	}
	for _, f := range Files {
		if _, ok := m.Files[f]; !ok {
			return nil, fmt.Errorf("parse manifest: no entry for %s", f)
		}
	}
	if len(m.Files) != len(Files) {
		return nil, fmt.Errorf("parse manifest: %d file entries, want %d", len(m.Files), len(Files))
	}
	return &m, nil
}

// decodeProblem describes a JSON decoding error without quoting the
// data: a manifest read from incoming may be anything, and its bytes must
// not reach a message.
func decodeProblem(err error) string {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Sprintf("field %s holds a JSON %s, not the type it needs", te.Field, te.Value)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "not valid JSON (cut short)"
	}
	return "not a valid manifest (an unknown field, or a value of the wrong form)"
}

// Marshal encodes the manifest as indented JSON, as written to disk.
func (m *Manifest) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// VerifySignature checks the manifest's signatures. With no trusted keys,
// any signature (or none) is accepted; with trusted keys, the manifest must
// carry a valid signature by one of them. A signature by a trusted key
// that does not verify is an error even when another one does.
func (m *Manifest) VerifySignature(trusted []ed25519.PublicKey) error {
	return verifySignatures(m.signatures(), trusted, m.signedBytes)
}

// verifySignatures is the check of VerifySignature and VerifyDetached:
// with no trusted keys anything is accepted; otherwise one of sigs by a
// trusted key must verify over signed(its key), and none by a trusted
// key may fail.
func verifySignatures(sigs []Signature, trusted []ed25519.PublicKey, signed func(key string) ([]byte, error)) error {
	if len(trusted) == 0 {
		return nil
	}
	if len(sigs) == 0 {
		return ErrUnsigned
	}
	if len(sigs) > MaxSignatures {
		return fmt.Errorf("%w: %d signatures, more than the %d allowed", ErrBadSignature, len(sigs), MaxSignatures)
	}
	verified := false
	var untrusted []string
	for _, s := range sigs {
		pub, err := base64.StdEncoding.DecodeString(s.SigningKey)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("%w: malformed signing key", ErrBadSignature)
		}
		i := slices.IndexFunc(trusted, func(k ed25519.PublicKey) bool { return bytes.Equal(k, pub) })
		if i < 0 {
			untrusted = append(untrusted, s.SigningKey)
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(s.Signature)
		if err != nil {
			return fmt.Errorf("%w: malformed signature", ErrBadSignature)
		}
		msg, err := signed(s.SigningKey)
		if err != nil {
			return err
		}
		if !ed25519.Verify(trusted[i], msg, sig) {
			return ErrBadSignature
		}
		verified = true
	}
	if !verified {
		return fmt.Errorf("%w (%s)", ErrUntrustedKey, strings.Join(untrusted, ", "))
	}
	return nil
}
