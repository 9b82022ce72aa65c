package bundle

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/certpush/certpush/internal/bounded"
)

// Anchor is what a certificate's chain must verify to before it becomes
// a bundle or is installed: "the chain verifies" means it verifies to a
// trusted root, not only that each certificate signed the one before it.
type Anchor struct {
	// Roots are the trusted roots; nil means the system's roots.
	Roots *x509.CertPool
	// AllowSelfSigned accepts a leaf that is its own issuer (a load
	// balancer's bootstrap certificate, a placeholder) although no root
	// vouches for it.
	AllowSelfSigned bool
}

// ErrUntrusted says that a certificate does not chain to a trusted root.
var ErrUntrusted = errors.New("certificate does not chain to a trusted root")

// Check reports whether leaf, with the intermediates chain, verifies to a
// root of a (for TLS server use) at now. The error wraps ErrUntrusted and
// says what to change.
func (a Anchor) Check(leaf *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	roots := a.Roots
	if roots == nil {
		var err error
		if roots, err = systemRoots(); err != nil {
			return fmt.Errorf("%w: %v", ErrUntrusted, err)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now})
	if err == nil {
		return nil
	}
	if SelfSigned(leaf) {
		if a.AllowSelfSigned {
			return nil
		}
		return fmt.Errorf("%w: it is self-signed (%s); set allow_self_signed: true for this certificate if that is intended", ErrUntrusted, leaf.Subject)
	}
	where := "the system's roots"
	if a.Roots != nil {
		where = "the configured roots"
	}
	return fmt.Errorf("%w: %v, checked against %s; for a private CA set roots: to a PEM file holding its root", ErrUntrusted, err, where)
}

// SelfSigned reports whether c is its own issuer: same subject and issuer,
// and its signature checks with its own key.
func SelfSigned(c *x509.Certificate) bool {
	if string(c.RawSubject) != string(c.RawIssuer) {
		return false
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

var system struct {
	once  sync.Once
	roots *x509.CertPool
	err   error
}

// systemRoots loads the system's roots once. An empty pool (no CA
// certificates installed) is an error that says so.
func systemRoots() (*x509.CertPool, error) {
	system.once.Do(func() {
		system.roots, system.err = x509.SystemCertPool()
		if system.err == nil && system.roots.Equal(x509.NewCertPool()) {
			system.err = errors.New("the system has no CA certificates (install ca-certificates, or set roots: to a PEM file)")
		}
	})
	return system.roots, system.err
}

// MaxRootsSize bounds a roots file.
const MaxRootsSize = 4 << 20

// LoadRoots reads a PEM file of root certificates. It is an error for the
// file to hold anything but certificates, or none.
func LoadRoots(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := bounded.ReadRegular(f, path, MaxRootsSize)
	if err != nil {
		return nil, err
	}
	return ParseRoots(path, data)
}

// ParseRoots parses PEM root certificates held in data, read from path.
func ParseRoots(path string, data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: holds a %s block; a roots file holds only certificates", path, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %v", path, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}
