package push

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key errors, checked with errors.Is. Nothing is sent to a host whose
// key fails the check: the SSH handshake stops before authentication.
var (
	ErrUnknownHost     = errors.New("host key is not in known_hosts")
	ErrHostKeyChanged  = errors.New("HOST KEY HAS CHANGED")
	ErrHostKeyRevoked  = errors.New("host key is revoked")
	ErrHostCertInvalid = errors.New("host certificate is not valid for this host")
	ErrNoKnownHostFile = errors.New("known_hosts file is missing")
)

// HostKeyError says which host presented which key, and what to do.
type HostKeyError struct {
	Err         error // ErrUnknownHost, ErrHostKeyChanged, ErrHostKeyRevoked or ErrHostCertInvalid
	Address     string
	Fingerprint string // SHA256:... of the presented key (of the certified key for a certificate)
	KnownHosts  string
	Line        string // the known_hosts line that would trust the presented key
	Why         string // for ErrHostCertInvalid and ErrHostKeyRevoked: what is wrong
}

func (e *HostKeyError) Error() string {
	switch e.Err {
	case ErrUnknownHost:
		return fmt.Sprintf("%s: no key or CA for this host: host key %s is not in %s%s; refusing to connect. If that fingerprint is right (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), trust it with: echo '%s' >> %s, or trust the CA that signs its host certificate with a line '@cert-authority PATTERN CA-PUBLIC-KEY'",
			e.Address, e.Fingerprint, e.KnownHosts, why(e.Why), e.Line, e.KnownHosts)
	case ErrHostKeyChanged:
		return fmt.Sprintf("%s: HOST KEY HAS CHANGED: it now presents %s, which does not match %s. Someone may be intercepting the connection, or the host was rebuilt. Nothing was sent. Verify the new key on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) before replacing its line; if it matches: ssh-keygen -R '%s' -f %s && echo '%s' >> %s",
			e.Address, e.Fingerprint, e.KnownHosts, knownhosts.Normalize(e.Address), e.KnownHosts, e.Line, e.KnownHosts)
	case ErrHostCertInvalid:
		return fmt.Sprintf("%s: host certificate not valid for this host: %s; refusing to connect, nothing was sent. Check the host's certificate (ssh-keygen -Lf /etc/ssh/ssh_host_ed25519_key-cert.pub) and the @cert-authority lines in %s",
			e.Address, e.Why, e.KnownHosts)
	default:
		return fmt.Sprintf("%s: host key %s is revoked in %s%s; refusing to connect", e.Address, e.Fingerprint, e.KnownHosts, why(e.Why))
	}
}

func why(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func (e *HostKeyError) Unwrap() error { return e.Err }

// hostKeys checks host keys against a known_hosts file the way OpenSSH's
// ssh -o StrictHostKeyChecking=yes does: plain keys, @cert-authority lines
// for host certificates, and @revoked keys and CAs.
type hostKeys struct {
	path  string
	lines []knownLine
	index *knownIndex
	bad   []badLine
	now   func() time.Time
}

// loadHostKeys reads known_hosts once. Each malformed line is logged as a
// warning naming FILE:LINE and skipped.
func loadHostKeys(path string, log *slog.Logger) (*hostKeys, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v (add each host with 'certpush trust HOST --fingerprint SHA256:...', the fingerprint checked on the host)", ErrNoKnownHostFile, err)
	}
	defer f.Close()
	lines, bad, err := parseKnownHosts(f)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts %s: %w", path, err)
	}
	for _, b := range bad {
		log.Warn("known_hosts: skipping malformed line", "line", fmt.Sprintf("%s:%d", path, b.line), "error", b.why)
	}
	return &hostKeys{path: path, lines: lines, index: newKnownIndex(lines), bad: bad, now: time.Now}, nil
}

// linesFor returns the lines that may apply to host, in file order (see
// knownIndex); all of them when there is no index.
func (k *hostKeys) linesFor(host hostNames) []knownLine {
	if k.index == nil {
		return k.lines
	}
	idx := k.index.candidates(host)
	out := make([]knownLine, len(idx))
	for i, j := range idx {
		out[i] = k.lines[j]
	}
	return out
}

// check is an ssh.HostKeyCallback. A failure is a *HostKeyError.
func (k *hostKeys) check(address string, _ net.Addr, key ssh.PublicKey) error {
	host := lookupNames(address)
	plain := key
	cert, isCert := key.(*ssh.Certificate)
	if isCert {
		plain = cert.Key
	}
	e := &HostKeyError{
		Address:     address,
		Fingerprint: ssh.FingerprintSHA256(plain),
		KnownHosts:  k.path,
		Line:        knownhosts.Line([]string{knownhosts.Normalize(address)}, plain),
	}
	if why, err := k.revoked(host, plain, cert); err != nil {
		e.Err, e.Why = err, why
		return e
	}
	if isCert && k.hasAuthority(host) {
		why := k.certProblem(address, cert)
		if why == "" {
			return nil
		}
		// Like OpenSSH, a certificate that does not pass falls back to its
		// plain key, which known_hosts may trust on its own.
		if k.known(host, plain) == nil {
			return nil
		}
		e.Err, e.Why = ErrHostCertInvalid, why
		return e
	}
	if err := k.known(host, plain); err != nil {
		e.Err = err
		if isCert && err == ErrUnknownHost {
			e.Why = fmt.Sprintf("it presents a host certificate signed by CA %s, and no @cert-authority line for this host", ssh.FingerprintSHA256(cert.SignatureKey))
		}
		return e
	}
	return nil
}

// revoked returns ErrHostKeyRevoked when an @revoked line for host names
// the key, ErrHostCertInvalid when one names the certificate's CA, and
// ErrHostKeyRevoked when a malformed line that may be a revocation names
// host (so that a typo never lifts a revocation).
func (k *hostKeys) revoked(host hostNames, key ssh.PublicKey, cert *ssh.Certificate) (why string, err error) {
	for _, l := range k.linesFor(host) {
		if l.marker != markerRevoked || !host.match(l.patterns) {
			continue
		}
		if sameKey(l.key, key) {
			return fmt.Sprintf("by the @revoked line %s:%d", k.path, l.line), ErrHostKeyRevoked
		}
		if cert != nil && sameKey(l.key, cert.SignatureKey) {
			return fmt.Sprintf("revoked CA: its CA %s is revoked at %s:%d", ssh.FingerprintSHA256(cert.SignatureKey), k.path, l.line), ErrHostCertInvalid
		}
	}
	for _, b := range k.bad {
		if b.revokes && b.patterns != "" && host.match(b.patterns) {
			return fmt.Sprintf("%s:%d, a malformed revocation for this host, cannot be read: %s; fix or remove it", k.path, b.line, b.why), ErrHostKeyRevoked
		}
	}
	return "", nil
}

// known checks a plain key against the plain lines for host: nil when one
// has the key, ErrHostKeyChanged when only others are there, and
// ErrUnknownHost when there are none.
func (k *hostKeys) known(host hostNames, key ssh.PublicKey) error {
	err := ErrUnknownHost
	for _, l := range k.linesFor(host) {
		if l.marker != markerNone || !host.match(l.patterns) {
			continue
		}
		if sameKey(l.key, key) {
			return nil
		}
		err = ErrHostKeyChanged
	}
	return err
}

func (k *hostKeys) hasAuthority(host hostNames) bool {
	return k.isAuthority(host, nil)
}

// isAuthority reports whether an @cert-authority line for host has ca
// (any CA when ca is nil).
func (k *hostKeys) isAuthority(host hostNames, ca ssh.PublicKey) bool {
	for _, l := range k.linesFor(host) {
		if l.marker == markerAuthority && host.match(l.patterns) && (ca == nil || sameKey(l.key, ca)) {
			return true
		}
	}
	return false
}

// certProblem returns "" when cert is a host certificate, signed by a CA
// known_hosts trusts for address, valid now and naming the host (one with
// no principals names every host, as in OpenSSH); otherwise it says what
// is wrong.
func (k *hostKeys) certProblem(address string, cert *ssh.Certificate) string {
	if cert.CertType != ssh.HostCert {
		return "it is a user certificate, not a host certificate"
	}
	if host := lookupNames(address); !k.isAuthority(host, cert.SignatureKey) {
		return fmt.Sprintf("wrong CA: it is signed by %s, which no @cert-authority line trusts for %s", ssh.FingerprintSHA256(cert.SignatureKey), host[0])
	}
	name, _, err := net.SplitHostPort(address)
	if err != nil {
		name = address
	}
	name = strings.ToLower(name)
	if len(cert.ValidPrincipals) > 0 && !slices.Contains(cert.ValidPrincipals, name) {
		return fmt.Sprintf("wrong principal: it is for %q, not %q", cert.ValidPrincipals, name)
	}
	now := k.now()
	switch {
	case now.Unix() < int64(cert.ValidAfter):
		return fmt.Sprintf("not yet valid: valid from %s", time.Unix(int64(cert.ValidAfter), 0).UTC().Format(time.RFC3339))
	case cert.ValidBefore != ssh.CertTimeInfinity && now.Unix() >= int64(cert.ValidBefore):
		return fmt.Sprintf("expired at %s", time.Unix(int64(cert.ValidBefore), 0).UTC().Format(time.RFC3339))
	}
	cc := ssh.CertChecker{Clock: k.now}
	if err := cc.CheckCert(name, cert); err != nil {
		return strings.TrimPrefix(err.Error(), "ssh: ")
	}
	return ""
}

// Host key algorithms a client can check with a certificate, and their
// plain counterparts, in the order offered.
var (
	certAlgorithms = []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	}
	plainAlgorithms = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
	}
)

// algorithms returns the host key algorithms to ask address for: when an
// @cert-authority line applies, the certificate algorithms first; then
// those of the plain keys known_hosts holds for address, so that the
// server is asked for a key we can check (rather than one of another type,
// which would look like a changed key). With a CA and no plain key, the
// plain algorithms follow, so that a host without a certificate is
// reported as unknown. Nil (the library's defaults) when nothing applies.
func (k *hostKeys) algorithms(address string) []string {
	host := lookupNames(address)
	var algos []string
	seen := map[string]bool{}
	add := func(as ...string) {
		for _, a := range as {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	ca := k.hasAuthority(host)
	if ca {
		add(certAlgorithms...)
	}
	plain := false
	for _, l := range k.linesFor(host) {
		if l.marker == markerNone && host.match(l.patterns) {
			add(algorithmsFor(l.key.Type())...)
			plain = true
		}
	}
	if ca && !plain {
		add(plainAlgorithms...)
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
