package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyAlgorithms are the plain host key algorithms FetchHostKeys asks
// for, one handshake each.
var hostKeyAlgorithms = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSASHA512,
}

// errGotKey ends a handshake once the host key is known: nothing is
// authenticated, nothing is sent.
var errGotKey = errors.New("host key received")

// FetchHostKeys returns the host keys address (host:port) presents, one
// per key type it has, by starting an SSH handshake per type and stopping
// it at the host key, before any authentication.
func FetchHostKeys(ctx context.Context, address string, timeout time.Duration) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	var last error
	for _, alg := range hostKeyAlgorithms {
		var got ssh.PublicKey
		cfg := &ssh.ClientConfig{
			User:              "certpush-trust",
			HostKeyAlgorithms: []string{alg},
			HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
				got = key
				return errGotKey
			},
			Timeout: timeout,
		}
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, "tcp", address)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", address, err)
		}
		conn.SetDeadline(time.Now().Add(timeout))
		_, _, _, err = ssh.NewClientConn(conn, address, cfg)
		conn.Close()
		if got != nil {
			keys = append(keys, got)
		} else if err != nil {
			last = err
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("ssh handshake with %s: %w", address, last)
	}
	return keys, nil
}

// KnownHostsLine is the known_hosts line that trusts key for address.
func KnownHostsLine(address string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{knownhosts.Normalize(address)}, key)
}
