// Package verify dials TLS endpoints and reports which certificate they
// serve, so that an install or a rollout can be checked from outside.
package verify

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Served is what one TLS endpoint presented.
type Served struct {
	Endpoint string
	Leaf     *x509.Certificate
	// Fingerprint is the lowercase hex SHA-256 of the leaf's DER, the
	// form used in bundle manifests.
	Fingerprint string
	// Chain holds the other certificates the endpoint sent, in order.
	Chain []*x509.Certificate
}

// Probe connects to endpoint (host:port) with SNI serverName and returns
// the leaf certificate it presents. The chain is not verified against any
// roots: the caller compares fingerprints with the bundle it expects, which
// is a stronger check than trusting a CA.
func Probe(ctx context.Context, endpoint, serverName string, timeout time.Duration) (*Served, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{
		NetDialer: &net.Dialer{},
		Config: &tls.Config{
			ServerName: serverName,
			// The served leaf is compared by fingerprint with the expected
			// bundle by every caller; chain trust is not what is checked.
			InsecureSkipVerify: true, //nolint:gosec
			MinVersion:         tls.VersionTLS12,
		},
	}
	conn, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, fmt.Errorf("tls dial %s: %w", endpoint, err)
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("tls dial %s: no certificate presented", endpoint)
	}
	leaf := state.PeerCertificates[0]
	return &Served{Endpoint: endpoint, Leaf: leaf, Fingerprint: SHA256(leaf.Raw), Chain: state.PeerCertificates[1:]}, nil
}

// ErrWrongCertificate is returned by Expect when an endpoint serves another
// certificate than the expected one.
var ErrWrongCertificate = errors.New("endpoint serves another certificate")

// Settle is how long an endpoint must keep serving the expected
// certificate, over at least three handshakes, before Expect accepts it.
// A reloading server runs old and new workers side by side for a moment
// (nginx: tens of milliseconds), and a single handshake may reach either.
const Settle = 150 * time.Millisecond

// Expect probes endpoint until it steadily serves the certificate with the
// given SHA-256 fingerprint (lowercase hex): at least three handshakes in a
// row over Settle, none presenting another certificate. It gives up at the
// timeout and returns the last error.
func Expect(ctx context.Context, endpoint, serverName, fingerprint string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		last   error
		since  time.Time // first of the current run of good handshakes
		good   int
		delay  = 20 * time.Millisecond
		expect = strings.ToLower(fingerprint)
	)
	for {
		s, err := Probe(ctx, endpoint, serverName, timeout)
		switch {
		case err != nil && ctx.Err() != nil && last != nil:
			// The probe was cut off by the overall timeout: what the
			// endpoint did before says more than "deadline exceeded".
			return last
		case err != nil:
			last, good = err, 0
		case s.Fingerprint == expect:
			if good == 0 {
				since = time.Now()
			}
			good++
			if good >= 3 && time.Since(since) >= Settle {
				return nil
			}
			delay = Settle / 3
		default:
			last, good = fmt.Errorf("%w: %s serves %s, want %s", ErrWrongCertificate, endpoint, short(s.Fingerprint), short(fingerprint)), 0
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			if last == nil {
				last = fmt.Errorf("%s: did not serve %s steadily", endpoint, short(fingerprint))
			}
			return last
		case <-t.C:
		}
		if good == 0 && delay < 500*time.Millisecond {
			delay *= 2
		}
	}
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// SHA256 returns the lowercase hex SHA-256 of der.
func SHA256(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Format renders the fingerprint of der with the named hash (md5, sha1 or
// sha256) as openssl prints it: uppercase hex pairs joined by colons.
func Format(der []byte, hash string) (string, error) {
	var sum []byte
	switch strings.ToLower(hash) {
	case "md5":
		s := md5.Sum(der) //nolint:gosec // some monitoring systems pin MD5
		sum = s[:]
	case "sha1":
		s := sha1.Sum(der) //nolint:gosec
		sum = s[:]
	case "sha256", "":
		s := sha256.Sum256(der)
		sum = s[:]
	default:
		return "", fmt.Errorf("unknown fingerprint hash %q (want md5, sha1 or sha256)", hash)
	}
	return Colons(sum), nil
}

// Colons renders a digest as openssl prints fingerprints: uppercase hex
// pairs joined by colons.
func Colons(sum []byte) string {
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// DefaultSNI returns the name to send when probing a certificate for
// domains: the first name that is not a wildcard, or the wildcard's
// parent with a "www" label when all are wildcards.
func DefaultSNI(domains []string) string {
	for _, d := range domains {
		if !strings.HasPrefix(d, "*.") {
			return d
		}
	}
	if len(domains) > 0 {
		return "www." + strings.TrimPrefix(domains[0], "*.")
	}
	return ""
}
