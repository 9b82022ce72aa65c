package bundle

import (
	"crypto/ed25519"
	"encoding/base64"
)

// Detached signatures sign other documents than manifests (pull mode's
// current pointer) with the same keys, checked against the same
// trusted_keys. The signed message is context followed by a newline and
// the document, so a signature made for one kind of document never
// verifies as another, nor as a manifest (which is JSON, not starting
// with the context).

// SignDetached signs doc for context with each of the signer's keys.
func (s *Signer) SignDetached(context string, doc []byte) []Signature {
	msg := detachedMessage(context, doc)
	var sigs []Signature
	for _, k := range s.keys {
		sigs = append(sigs, Signature{publicKey(k), base64.StdEncoding.EncodeToString(ed25519.Sign(k, msg))})
	}
	return sigs
}

// VerifyDetached checks sigs over doc for context the way
// Manifest.VerifySignature checks a manifest's: with no trusted keys
// anything is accepted; otherwise one signature by a trusted key must
// verify, and none by a trusted key may fail.
func VerifyDetached(context string, doc []byte, sigs []Signature, trusted []ed25519.PublicKey) error {
	msg := detachedMessage(context, doc)
	return verifySignatures(sigs, trusted, func(string) ([]byte, error) { return msg, nil })
}

func detachedMessage(context string, doc []byte) []byte {
	return append([]byte("certpush "+context+" signature v1\n"), doc...)
}
