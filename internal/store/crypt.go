package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"

	"github.com/certpush/certpush/internal/bounded"
)

// ParseRecipient parses one recipient: an age X25519 public key
// (age1...) or an SSH ed25519 / RSA public key (authorized_keys form).
func ParseRecipient(s string) (age.Recipient, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "age1") {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", s, err)
		}
		return r, nil
	}
	if strings.HasPrefix(s, "ssh-") {
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", s, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("recipient %q: want an age public key (age1...) or an SSH ed25519/RSA public key (ssh-ed25519 ..., ssh-rsa ...)", s)
}

// RecipientsID is a short digest of a recipient list, independent of its
// order: the key object's name carries it, so that a change of recipients
// makes a new key object (the old ones are never overwritten).
func RecipientsID(recipients []string) string {
	rs := make([]string, 0, len(recipients))
	for _, r := range recipients {
		f := strings.Fields(r)
		if len(f) >= 2 && strings.HasPrefix(f[0], "ssh-") {
			r = f[0] + " " + f[1] // drop the comment
		}
		rs = append(rs, strings.TrimSpace(r))
	}
	sort.Strings(rs)
	h := sha256.Sum256([]byte(strings.Join(rs, "\n")))
	return hex.EncodeToString(h[:4])
}

// Encrypt encrypts a private key to recipients.
func Encrypt(plain []byte, recipients []string) ([]byte, error) {
	if len(recipients) == 0 {
		return nil, errors.New("no recipients: list the nodes' age or SSH public keys under store.recipients")
	}
	var rs []age.Recipient
	for _, s := range recipients {
		r, err := ParseRecipient(s)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rs...)
	if err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	return buf.Bytes(), nil
}

// ErrNoIdentity says that the node's identity cannot decrypt a key.
var ErrNoIdentity = errors.New("the node's identity is not among the key's recipients")

// Decrypt decrypts an encrypted key with identities, reading at most
// limit bytes of plaintext.
func Decrypt(enc []byte, ids []age.Identity, limit int) ([]byte, error) {
	r, err := age.Decrypt(bytes.NewReader(enc), ids...)
	if err != nil {
		if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
			return nil, fmt.Errorf("decrypt key: %w", ErrNoIdentity)
		}
		return nil, fmt.Errorf("decrypt key: %w", err)
	}
	return bounded.ReadAll(r, limit)
}

// LoadIdentity reads the node's identity file: an age identity file
// (AGE-SECRET-KEY-1...) or an unencrypted SSH private key (a host key).
// The file must not be readable by group or others.
func LoadIdentity(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("identity %s has mode %v: it must not be readable by group or others (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	if bytes.Contains(data, []byte("AGE-SECRET-KEY-")) {
		ids, err := age.ParseIdentities(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", path, err)
		}
		return ids, nil
	}
	id, err := agessh.ParseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("identity %s: not an age identity file nor an unencrypted SSH private key: %w", path, err)
	}
	return []age.Identity{id}, nil
}
