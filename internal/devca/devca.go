// Package devca is a small certificate authority for demos and tests: a
// root, an intermediate, and leaf certificates issued on demand. It is
// never used for certificates that serve real traffic.
package devca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// CA is a root and an intermediate that issues leaves.
type CA struct {
	Root         *x509.Certificate
	Intermediate *x509.Certificate
	rootKey      crypto.Signer
	interKey     crypto.Signer
}

// New makes a root and an intermediate named after name.
func New(name string) (*CA, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root, err := sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Root", Organization: []string{name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	inter, err := sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Intermediate", Organization: []string{name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	return &CA{Root: root, Intermediate: inter, rootKey: rootKey, interKey: interKey}, nil
}

// Leaf describes a certificate to issue.
type Leaf struct {
	Domains   []string
	NotBefore time.Time // default: now
	NotAfter  time.Time // default: 90 days after NotBefore
	KeyType   string    // ec256 (default), ec384, rsa2048
}

// Issued is a leaf with its chain and key, PEM encoded.
type Issued struct {
	Cert  []byte // the leaf
	Chain []byte // the intermediate
	Key   []byte // PKCS #8
	Leaf  *x509.Certificate
}

// Issue signs a leaf certificate for l.Domains with the intermediate.
func (ca *CA) Issue(l Leaf) (*Issued, error) {
	is, err := issue(l, ca.Intermediate, ca.interKey)
	if err != nil {
		return nil, err
	}
	is.Chain = PEM(ca.Intermediate)
	return is, nil
}

// SelfSigned makes a leaf for l.Domains that is its own issuer, with no
// chain.
func SelfSigned(l Leaf) (*Issued, error) {
	return issue(l, nil, nil)
}

// issue signs a leaf for l with parent's key, or with its own key when
// parent is nil.
func issue(l Leaf, parent *x509.Certificate, parentKey crypto.Signer) (*Issued, error) {
	key, err := NewKey(l.KeyType)
	if err != nil {
		return nil, err
	}
	if parentKey == nil {
		parentKey = key
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-time.Second)
	}
	if l.NotAfter.IsZero() {
		l.NotAfter = l.NotBefore.Add(90 * 24 * time.Hour)
	}
	leaf, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: l.Domains[0]},
		DNSNames:    l.Domains,
		NotBefore:   l.NotBefore,
		NotAfter:    l.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Issued{
		Cert: PEM(leaf),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		Leaf: leaf,
	}, nil
}

// RootPEM is the root certificate, PEM encoded: the contents of a roots:
// file that trusts this CA.
func (ca *CA) RootPEM() []byte { return PEM(ca.Root) }

// NewKey makes a private key of the named type.
func NewKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", "ec256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ec384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown key type %q", keyType)
}

// Pool returns a pool holding the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// PEM encodes a certificate.
func PEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

var serial = big.NewInt(time.Now().UnixNano())

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) (*x509.Certificate, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = s.Add(s, serial)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
