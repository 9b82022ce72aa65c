package bundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Material is a parsed certificate, its chain and its private key.
type Material struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // intermediates, leaf excluded, in order
	Key   crypto.Signer

	CertPEM  []byte // the leaf alone
	ChainPEM []byte // the intermediates
	KeyPEM   []byte
}

// ParseMaterial parses PEM data. cert may hold the leaf alone (then chain
// holds the intermediates) or a full chain (then chain may be empty). Only
// CERTIFICATE blocks are accepted in cert and chain, and exactly one private
// key block in key.
func ParseMaterial(cert, chain, key []byte) (*Material, error) {
	for _, f := range []struct {
		what string
		data []byte
	}{{"certificate", cert}, {"chain", chain}, {"private key", key}} {
		if len(f.data) > MaxFileSize {
			return nil, fmt.Errorf("%s is %d bytes, larger than the %d allowed", f.what, len(f.data), MaxFileSize)
		}
	}
	certs, err := parseCerts("certificate", cert)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("certificate: no CERTIFICATE block found")
	}
	more, err := parseCerts("chain", chain)
	if err != nil {
		return nil, err
	}
	certs = append(certs, more...)
	k, err := ParsePrivateKey(key)
	if err != nil {
		return nil, err
	}
	m := &Material{Leaf: certs[0], Chain: certs[1:], Key: k}
	m.CertPEM = encodeCerts(certs[:1])
	m.ChainPEM = encodeCerts(certs[1:])
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	m.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return m, nil
}

func parseCerts(what string, data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want CERTIFICATE", what, n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", what, n, err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: data that is not PEM after block %d", what, len(out))
	}
	return out, nil
}

// ParsePrivateKey parses exactly one PEM private key block: PKCS #8,
// SEC 1 (EC) or PKCS #1 (RSA). The errors start with "private key:".
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("private key: no PEM block found")
	}
	if b, _ := pem.Decode(rest); b != nil {
		return nil, errors.New("private key: more than one PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("private key: PEM block is %q, want a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key: unsupported type %T", k)
	}
	return s, nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// Fullchain returns the leaf followed by the intermediates.
func (m *Material) Fullchain() []byte {
	return append(append([]byte{}, m.CertPEM...), m.ChainPEM...)
}

// Fingerprint returns the lowercase hex SHA-256 of the leaf's DER.
func (m *Material) Fingerprint() string { return Fingerprint(m.Leaf) }

// ID returns the bundle id: the first 16 hex digits of the fingerprint.
func (m *Material) ID() string { return m.Fingerprint()[:16] }

// Fingerprint returns the lowercase hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// KeyType names the private key's algorithm: ec256, ec384, ec521, rsa2048,
// rsa3072, rsa4096, ed25519.
func KeyType(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ec%d", k.Curve.Params().BitSize)
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case ed25519.PublicKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// Domains returns the certificate's DNS names, or its common name when it
// has no SANs.
func Domains(c *x509.Certificate) []string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames
	}
	if c.Subject.CommonName != "" {
		return []string{c.Subject.CommonName}
	}
	return nil
}

// Validation errors, checked with errors.Is.
var (
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	ErrChain       = errors.New("chain does not verify to the certificate")
	ErrNames       = errors.New("certificate does not cover the required names")
	ErrExpired     = errors.New("certificate is expired")
	ErrNotYetValid = errors.New("certificate is not valid yet")
)

// Validate checks that the key matches the leaf, that each certificate of
// the chain signed the one before it, that the leaf covers every name of
// domains (RFC 6125 wildcards), and that it is valid at now. Whether the
// chain ends at a trusted root is Anchor.Check's question.
func (m *Material) Validate(domains []string, now time.Time) error {
	if !publicKeysEqual(m.Leaf.PublicKey, m.Key.Public()) {
		return ErrKeyMismatch
	}
	if now.After(m.Leaf.NotAfter) {
		return fmt.Errorf("%w: not after %s", ErrExpired, m.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(m.Leaf.NotBefore) {
		return fmt.Errorf("%w: not before %s", ErrNotYetValid, m.Leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	child := m.Leaf
	for i, parent := range m.Chain {
		if err := child.CheckSignatureFrom(parent); err != nil {
			return fmt.Errorf("%w: chain certificate %d (%s) did not sign %s: %v", ErrChain, i+1, parent.Subject, child.Subject, err)
		}
		child = parent
	}
	if missing := Uncovered(m.Leaf, domains); len(missing) > 0 {
		return fmt.Errorf("%w: %s (certificate has %s)", ErrNames, strings.Join(missing, ", "), strings.Join(Domains(m.Leaf), ", "))
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// Uncovered returns the names of want that the certificate does not cover.
func Uncovered(c *x509.Certificate, want []string) []string {
	var missing []string
	for _, w := range want {
		if !Covers(Domains(c), w) {
			missing = append(missing, w)
		}
	}
	return missing
}

// Covers reports whether a certificate with the names sans is valid for
// name, by the rules of RFC 6125 section 6.4: names compare without case
// and without a trailing dot; a wildcard "*.example.com" matches exactly one
// left-most label ("a.example.com", not "example.com" nor
// "a.b.example.com"). A requested wildcard name is covered only by the same
// wildcard.
func Covers(sans []string, name string) bool {
	name = normalize(name)
	if name == "" {
		return false
	}
	for _, san := range sans {
		san = normalize(san)
		if san == name {
			return true
		}
		if strings.HasPrefix(name, "*.") {
			continue
		}
		if suffix, ok := strings.CutPrefix(san, "*."); ok && suffix != "" {
			label, rest, found := strings.Cut(name, ".")
			if found && label != "" && rest == suffix {
				return true
			}
		}
	}
	return false
}

func normalize(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}

// String describes the material without its key, so that printing it by
// mistake can never leak the private key.
func (m *Material) String() string {
	return fmt.Sprintf("certificate %s for %s (key %s)", m.Fingerprint()[:16], strings.Join(Domains(m.Leaf), ", "), KeyType(m.Leaf.PublicKey))
}

// GoString is String, for %#v.
func (m *Material) GoString() string { return m.String() }

// LogValue is what log/slog records for the material: never the key.
func (m *Material) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("fingerprint", m.Fingerprint()),
		slog.Any("domains", Domains(m.Leaf)),
		slog.Time("not_after", m.Leaf.NotAfter),
	)
}
