package push

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Auth returns the SSH authentication methods: the identity file when one
// is given, and the ssh-agent at agentSocket when that is not empty. The
// returned close function releases the agent connection.
func Auth(identity, agentSocket string) (methods []ssh.AuthMethod, closeFn func(), err error) {
	closeFn = func() {}
	if identity != "" {
		data, err := os.ReadFile(identity)
		if err != nil {
			return nil, closeFn, fmt.Errorf("read identity: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, closeFn, fmt.Errorf("identity %s is protected by a passphrase: load it into ssh-agent (ssh-add %s) and leave ssh.identity unset", identity, identity)
		}
		if err != nil {
			return nil, closeFn, fmt.Errorf("identity %s: %w", identity, err)
		}
		methods = append(methods, ssh.PublicKeys(signer))
	}
	if agentSocket != "" {
		conn, err := net.Dial("unix", agentSocket)
		if err != nil {
			if len(methods) > 0 {
				return methods, closeFn, nil
			}
			return nil, closeFn, fmt.Errorf("connect to ssh-agent: %w", err)
		}
		closeFn = func() { conn.Close() }
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	if len(methods) == 0 {
		return nil, closeFn, errors.New("no SSH credentials: set ssh.identity in the config or run an ssh-agent (SSH_AUTH_SOCK)")
	}
	return methods, closeFn, nil
}
