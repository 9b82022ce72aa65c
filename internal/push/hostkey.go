package push

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key errors, checked with errors.Is. Nothing is sent to a host whose
// key fails the check: the SSH handshake stops before authentication.
var (
	ErrUnknownHost     = errors.New("host key is not in known_hosts")
	ErrHostKeyChanged  = errors.New("HOST KEY HAS CHANGED")
	ErrHostKeyRevoked  = errors.New("host key is revoked")
	ErrNoKnownHostFile = errors.New("known_hosts file is missing")
)

// HostKeyError says which host presented which key, and what to do.
type HostKeyError struct {
	Err         error // one of ErrUnknownHost, ErrHostKeyChanged, ErrHostKeyRevoked
	Address     string
	Fingerprint string // SHA256:... of the presented key
	KnownHosts  string
	Line        string // the known_hosts line that would trust the presented key
}

func (e *HostKeyError) Error() string {
	switch e.Err {
	case ErrUnknownHost:
		return fmt.Sprintf("%s: host key %s is not in %s; refusing to connect. If that fingerprint is right (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), trust it with: echo '%s' >> %s",
			e.Address, e.Fingerprint, e.KnownHosts, e.Line, e.KnownHosts)
	case ErrHostKeyChanged:
		return fmt.Sprintf("%s: HOST KEY HAS CHANGED: it now presents %s, which does not match %s. Someone may be intercepting the connection, or the host was rebuilt. Nothing was sent. Verify the new key on the host before replacing its line in %s",
			e.Address, e.Fingerprint, e.KnownHosts, e.KnownHosts)
	default:
		return fmt.Sprintf("%s: host key %s is revoked in %s; refusing to connect", e.Address, e.Fingerprint, e.KnownHosts)
	}
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// hostKeys checks host keys against a known_hosts file.
type hostKeys struct {
	path     string
	callback ssh.HostKeyCallback
}

func loadHostKeys(path string) (*hostKeys, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: %v (create it, e.g. with ssh-keyscan, and check every fingerprint)", ErrNoKnownHostFile, err)
	}
	cb, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return &hostKeys{path: path, callback: cb}, nil
}

// check is an ssh.HostKeyCallback that turns knownhosts' errors into
// HostKeyErrors.
func (k *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := k.callback(hostname, remote, key)
	if err == nil {
		return nil
	}
	e := &HostKeyError{
		Address:     hostname,
		Fingerprint: ssh.FingerprintSHA256(key),
		KnownHosts:  k.path,
		Line:        knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key),
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &ke) && len(ke.Want) == 0:
		e.Err = ErrUnknownHost
	case errors.As(err, &ke):
		e.Err = ErrHostKeyChanged
	case errors.As(err, &re):
		e.Err = ErrHostKeyRevoked
	default:
		return err
	}
	return e
}

// algorithms returns the host key algorithms known_hosts holds for
// address, so that the server is asked for a key we can check (rather than
// one of another type, which would look like a changed key).
func (k *hostKeys) algorithms(address string) []string {
	err := k.callback(address, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range ke.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	if strings.HasPrefix(keyType, "ssh-rsa-cert") {
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// probeKey is a key no known_hosts line matches; checking it makes
// knownhosts list the keys it has for an address.
type probeKey struct{}

func (probeKey) Type() string                        { return "certpush-probe" }
func (probeKey) Marshal() []byte                     { return []byte("certpush-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }
