package store

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

// Layout of a store (keys relative to the store's prefix):
//
//	<name>/<id>/manifest.json                 immutable, signed manifest
//	<name>/<id>/cert.pem chain.pem fullchain.pem
//	<name>/<id>/privkey.<recipients>.pem.age  the key, age-encrypted
//	<name>/current                            signed pointer (Pointer)
//	<name>/lease                              renewal lease (Lease)
//	<name>/nodes/<node-id>                    a pulling node's report
//	acme/account.age                          the shared ACME account
//
// <recipients> is RecipientsID of the recipient list, so a change of
// recipients adds a key object and never rewrites one.

// CurrentKey is the key of name's current pointer.
func CurrentKey(name string) string { return name + "/current" }

// LeaseKey is the key of name's renewal lease.
func LeaseKey(name string) string { return name + "/lease" }

// NodeKey is the key of node's report for name.
func NodeKey(name, node string) string { return name + "/nodes/" + node }

// NodesPrefix lists the node reports of name.
func NodesPrefix(name string) string { return name + "/nodes/" }

// AccountKey holds the shared ACME account, encrypted.
const AccountKey = "acme/account.age"

// FileKey is the key of one public file (or the manifest) of a bundle.
func FileKey(name, id, file string) string { return path.Join(name, id, file) }

// KeyObject is the name (within the bundle's directory) of the key
// encrypted to the recipients with RecipientsID rid.
func KeyObject(rid string) string { return "privkey." + rid + ".pem.age" }

// PublicFiles are the bundle files stored as they are.
var PublicFiles = []string{bundle.ManifestFile, bundle.CertFile, bundle.ChainFile, bundle.FullchainFile}

// MaxObject bounds every object pull mode reads but the manifest's files
// (which bundle.MaxFileSize bounds).
const MaxObject = 64 << 10

// PointerFormat is the version of the pointer format.
const PointerFormat = 1

// pointerContext separates pointer signatures from any other.
const pointerContext = "current-pointer"

// Pointer is <name>/current: which bundle is current, where its key is,
// signed by the publisher's signing keys.
type Pointer struct {
	Version        int       `json:"version"`
	Name           string    `json:"name"`
	ID             string    `json:"id"`
	NotBefore      time.Time `json:"not_before"`
	ManifestSHA256 string    `json:"manifest_sha256"`
	Key            string    `json:"key"` // KeyObject of the bundle
	Published      time.Time `json:"published"`
	// Signatures cover the pointer encoded with no signatures.
	Signatures []bundle.Signature `json:"signatures,omitempty"`
}

// ErrBadPointer says that a current pointer is malformed or does not
// verify.
var ErrBadPointer = errors.New("bad current pointer")

func (p *Pointer) signed() ([]byte, error) {
	c := *p
	c.Signatures = nil
	return json.Marshal(&c)
}

// Sign signs the pointer with s and encodes it.
func (p *Pointer) Sign(s *bundle.Signer) ([]byte, error) {
	p.Version = PointerFormat
	msg, err := p.signed()
	if err != nil {
		return nil, err
	}
	p.Signatures = s.SignDetached(pointerContext, msg)
	return json.Marshal(p)
}

// ParsePointer decodes and verifies a current pointer for name against
// trusted (with no trusted keys, any signature or none is accepted).
func ParsePointer(data []byte, name string, trusted []ed25519.PublicKey) (*Pointer, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Pointer
	if err := dec.Decode(&p); err != nil || dec.More() {
		return nil, fmt.Errorf("%w: not valid JSON", ErrBadPointer)
	}
	if p.Version != PointerFormat {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrBadPointer, p.Version, PointerFormat)
	}
	if p.Name != name {
		return nil, fmt.Errorf("%w: it is for %q, not %q", ErrBadPointer, p.Name, name)
	}
	if !wire.ValidID(p.ID) || len(p.ManifestSHA256) != 64 || CheckKey(p.Key) != nil || path.Base(p.Key) != p.Key {
		return nil, fmt.Errorf("%w: bad id, manifest hash or key name", ErrBadPointer)
	}
	msg, err := p.signed()
	if err != nil {
		return nil, err
	}
	if err := bundle.VerifyDetached(pointerContext, msg, p.Signatures, trusted); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPointer, err)
	}
	return &p, nil
}

// SHA256 is the lowercase hex SHA-256 of data.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
