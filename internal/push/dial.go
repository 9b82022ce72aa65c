package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/inventory"
)

// Dialer opens SSH connections to hosts, checking every host key against
// known_hosts. It is safe for concurrent use.
type Dialer struct {
	auth           []ssh.AuthMethod
	keys           *hostKeys
	connectTimeout time.Duration
	dialTCP        func(ctx context.Context, addr string) (net.Conn, error) // nil: a net.Dialer (see Options.DialTCP)
}

// NewDialer reads the known_hosts file once, logging to log (nil for
// none) a warning for each malformed line it skips.
func NewDialer(auth []ssh.AuthMethod, knownHosts string, connectTimeout time.Duration, log *slog.Logger) (*Dialer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, err := loadHostKeys(knownHosts, log)
	if err != nil {
		return nil, err
	}
	if connectTimeout <= 0 {
		connectTimeout = 10 * time.Second
	}
	return &Dialer{auth: auth, keys: keys, connectTimeout: connectTimeout}, nil
}

// Dial connects to h and completes the SSH handshake within the connect
// timeout. A host key that is unknown, changed or revoked, or a host
// certificate that is not valid for h, is a *HostKeyError, and
// nothing is sent to that host.
func (d *Dialer) Dial(ctx context.Context, h inventory.Host) (*ssh.Client, error) {
	addr := h.SSHAddress()
	dctx, cancel := context.WithTimeout(ctx, d.connectTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if d.dialTCP != nil {
		conn, err = d.dialTCP(dctx, addr)
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, connectFailed(err)
	}
	cfg := &ssh.ClientConfig{
		User:              h.User,
		Auth:              d.auth,
		HostKeyCallback:   d.keys.check,
		HostKeyAlgorithms: d.keys.algorithms(addr),
		Timeout:           d.connectTimeout,
	}
	// The handshake takes no context: bound it with a deadline on the
	// connection, cleared once it is done.
	deadline, _ := dctx.Deadline()
	conn.SetDeadline(deadline)
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		if errors.As(err, &hk) {
			return nil, hk
		}
		return nil, fmt.Errorf("ssh handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// connectError is a TCP connect that failed, kept small: a push over
// 100,000 hosts that are down keeps one per host until the report, and the
// dialer's error holds addresses, a syscall error and their text several
// times over. It says what the dialer's error says, and unwraps to its
// cause: the errno (ECONNREFUSED, ...), the timeout, the DNS error.
type connectError struct {
	msg   string
	cause []error
}

func (e *connectError) Error() string   { return e.msg }
func (e *connectError) Unwrap() []error { return e.cause }

func connectFailed(err error) error {
	ce := &connectError{msg: "connect: " + err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		ce.cause = append(ce.cause, errno)
	}
	for _, e := range []error{context.DeadlineExceeded, context.Canceled, os.ErrDeadlineExceeded} {
		if errors.Is(err, e) {
			ce.cause = append(ce.cause, e)
		}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		ce.cause = append(ce.cause, dns)
	}
	return ce
}

// conn is one SSH connection to a host with an SFTP client on it.
type conn struct {
	ssh  *ssh.Client
	sftp *sftp.Client
	stop func() bool // releases the context watch
}

// dialSFTP connects to h (see Dial) and starts SFTP on the connection.
// Until Close, the end of ctx closes the connection: that is how a
// deadline interrupts SFTP and session calls, which take no context, and
// their errors then wrap ctx's.
func (d *Dialer) dialSFTP(ctx context.Context, h inventory.Host) (*conn, error) {
	client, err := d.Dial(ctx, h)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { client.Close() })
	sc, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		stop()
		client.Close()
		return nil, ctxErr(ctx, fmt.Errorf("start sftp: %w%s", err, sftpHint(ctx, err)))
	}
	return &conn{ssh: client, sftp: sc, stop: stop}, nil
}

// sftpHint explains an SFTP start that read something other than SFTP:
// the push account's shell printed text, or ran nothing at all. When ctx
// has ended, the connection was closed here and there is nothing to
// explain.
func sftpHint(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return ""
	}
	msg := err.Error()
	if strings.Contains(msg, "packet too long") || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return " (the host did not answer in SFTP: the push account's shell printed something or would not run the SFTP server. " +
			"A nologin shell, a forced command that prints text, or output from shell start-up files such as ~/.bashrc all do this. " +
			"Give the account /bin/sh with no start-up output, or use ForceCommand internal-sftp as in hooks/sshd_config.certpush)"
	}
	return ""
}

// Close ends SFTP and the connection.
func (c *conn) Close() error {
	c.stop()
	c.sftp.Close()
	return c.ssh.Close()
}

// ctxErr prefers the context's error when a call failed because the
// connection was closed at the deadline.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ctx.Err(), err)
	}
	return err
}
