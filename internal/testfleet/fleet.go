// Package testfleet starts a fleet of test hosts on loopback, each one a
// real OpenSSH sshd and a real nginx serving TLS, laid out as certnode
// expects. Integration tests and the demo push certificates to it.
//
// Every host has its own directory under the fleet's base directory:
//
//	<host>/ssh/        sshd_config, host key, authorized_keys, sshd.log
//	<host>/root/       certnode root (archive/, live/)
//	<host>/incoming/   where pushes land
//	<host>/webroot/    served at /.well-known/acme-challenge/ on HTTPPort
//	<host>/nginx/      nginx prefix: nginx.conf, pid, logs, temp paths
//	<host>/certnode.yaml
//
// and the client side lives in client/ (id_ed25519, known_hosts), the copied
// certnode binary in bin/. Run as root, the fleet's account is the system
// user FleetUser (created on first use); otherwise the current user.
package testfleet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

// Options say what fleet to start.
type Options struct {
	Hosts    int      // number of hosts, named node-1, node-2, ...
	CertName string   // certificate name, e.g. "example.test"
	Domains  []string // names nginx serves, e.g. example.test, *.example.test
	// Certnode is a built certnode binary, copied into the fleet so that
	// the fleet user can run it. Empty leaves Host.Command empty.
	Certnode string
	// TrustedKey is the base64 Ed25519 public key written to certnode's
	// trusted_keys; empty writes none.
	TrustedKey string
	// Signer signs the bootstrap bundles; nil uses a fresh key.
	Signer *bundle.Signer
	// BootstrapValidity is how long the bootstrap certificate is valid;
	// 0 means one hour, short enough that any certificate issued later
	// for an hour or more is newer in every respect.
	BootstrapValidity time.Duration
	Dir               string // parent of the base directory; "" = os.TempDir()
	Logger            *slog.Logger
	// NoNginx starts light hosts: sshd only. The directories and the
	// bootstrap bundle are laid out as usual, but certnode.yaml has no
	// config test, "true" as the reload and no endpoints to verify, and
	// WriteInventory lists no verify endpoints. Benchmarks use it to
	// measure the SSH side alone.
	NoNginx bool
}

// Fleet is a started fleet. Close stops it and removes its directory.
type Fleet struct {
	Dir        string // base directory
	User       string // account the hosts let in over SSH and run nginx as
	UID, GID   int
	Identity   string // client private key (OpenSSH format, 0600)
	KnownHosts string // one line per host
	Certnode   string // the copied certnode binary, "" without Options.Certnode
	CertName   string
	Domains    []string
	Signer     *bundle.Signer // signed the bootstrap bundles
	Hosts      []*Host
	NoNginx    bool // light hosts: sshd only (Options.NoNginx)
	// CA is the fleet's own certificate authority, and Roots a PEM file
	// holding its root: both configs the fleet writes set roots: to it,
	// as a private CA's users do. TrustRoot adds other roots (pebble's).
	CA    *devca.CA
	Roots string

	log       *slog.Logger
	acct      account
	clientKey ssh.Signer
	wd        *watchdog
	closeOnce sync.Once
	closeErr  error
}

// Start creates the fleet's directory and starts every host concurrently.
// On error, whatever was started is stopped and the directory removed.
func Start(ctx context.Context, opts Options) (_ *Fleet, err error) {
	if opts.Hosts < 1 {
		return nil, errors.New("start fleet: no hosts")
	}
	if err := bundle.ValidName(opts.CertName); err != nil {
		return nil, fmt.Errorf("start fleet: certificate name: %w", err)
	}
	if len(opts.Domains) == 0 {
		return nil, errors.New("start fleet: no domains")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.BootstrapValidity <= 0 {
		opts.BootstrapValidity = time.Hour
	}
	signer := opts.Signer
	if signer == nil {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("start fleet: signing key: %w", err)
		}
		signer = bundle.NewSigner(key)
	}
	acct, err := fleetAccount(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "certpush-fleet-")
	if err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("start fleet: %w", err)
	}
	f := &Fleet{
		Dir:        dir,
		User:       acct.name,
		UID:        acct.uid,
		GID:        acct.gid,
		Identity:   filepath.Join(dir, "client", "id_ed25519"),
		KnownHosts: filepath.Join(dir, "client", "known_hosts"),
		CertName:   opts.CertName,
		Domains:    append([]string(nil), opts.Domains...),
		Signer:     signer,
		NoNginx:    opts.NoNginx,
		log:        log,
		acct:       acct,
	}
	defer func() {
		if err != nil {
			if cerr := f.Close(); cerr != nil {
				log.Warn("stop fleet after failed start", "err", cerr)
			}
			err = fmt.Errorf("start fleet: %w", err)
		}
	}()
	if f.wd, err = startWatchdog(); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := makeTraversable(dir, acct, log); err != nil {
		return nil, err
	}
	if err := f.prepareClient(opts); err != nil {
		return nil, err
	}
	if f.CA, err = devca.New("fleet"); err != nil {
		return nil, err
	}
	f.Roots = filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(f.Roots, f.CA.RootPEM(), 0o644); err != nil {
		return nil, err
	}
	authorized, err := os.ReadFile(f.Identity + ".pub")
	if err != nil {
		return nil, err
	}
	for i := range opts.Hosts {
		f.Hosts = append(f.Hosts, &Host{Name: "node-" + strconv.Itoa(i+1), fleet: f})
	}
	errs := make([]error, len(f.Hosts))
	var wg sync.WaitGroup
	for i, h := range f.Hosts {
		wg.Go(func() {
			if err := h.start(ctx, opts, authorized); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", h.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := f.writeKnownHosts(); err != nil {
		return nil, err
	}
	log.Info("fleet started", "dir", dir, "hosts", len(f.Hosts), "user", f.User)
	return f, nil
}

// TrustRoot adds the PEM certificates in pem to the fleet's roots file,
// which certpush and certnode read at each run.
func (f *Fleet) TrustRoot(pem []byte) error {
	fh, err := os.OpenFile(f.Roots, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("trust root: %w", err)
	}
	if _, err := fh.Write(pem); err != nil {
		fh.Close()
		return fmt.Errorf("trust root: %w", err)
	}
	return fh.Close()
}

// prepareClient writes the client key and copies certnode.
func (f *Fleet) prepareClient(opts Options) error {
	if err := os.Mkdir(filepath.Join(f.Dir, "client"), 0o700); err != nil {
		return err
	}
	pub, err := writeSSHKey(f.Identity, "certpush-fleet-client")
	if err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	if err := atomicfile.WriteFile(f.Identity+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	data, err := os.ReadFile(f.Identity)
	if err != nil {
		return err
	}
	if f.clientKey, err = ssh.ParsePrivateKey(data); err != nil {
		return fmt.Errorf("client key: %w", err)
	}
	if opts.Certnode == "" {
		return nil
	}
	bin := filepath.Join(f.Dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return err
	}
	f.Certnode = filepath.Join(bin, "certnode")
	if err := copyFile(opts.Certnode, f.Certnode, 0o755); err != nil {
		return fmt.Errorf("copy certnode: %w", err)
	}
	return nil
}

func (f *Fleet) writeKnownHosts() error {
	var data []byte
	for _, h := range f.Hosts {
		line := knownhosts.Line([]string{knownhosts.Normalize(h.SSHAddr())}, h.HostKey)
		data = append(data, line+"\n"...)
	}
	return atomicfile.WriteFile(f.KnownHosts, data, 0o644)
}

// ClientConfig returns an SSH client configuration for the fleet user with
// the fleet's client key, checking host keys against KnownHosts.
func (f *Fleet) ClientConfig() (*ssh.ClientConfig, error) {
	cb, err := knownhosts.New(f.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	return &ssh.ClientConfig{
		User:            f.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(f.clientKey)},
		HostKeyCallback: cb,
		Timeout:         10 * time.Second,
	}, nil
}

// Host returns the host with the given name, or nil.
func (f *Fleet) Host(name string) *Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Close stops every process of the fleet (SIGTERM, then SIGKILL after a
// bounded wait), waits for them to exit, and removes the base directory.
// It may be called more than once.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		errs := make([]error, len(f.Hosts))
		var wg sync.WaitGroup
		for i, h := range f.Hosts {
			wg.Go(func() { errs[i] = h.stopAll() })
		}
		wg.Wait()
		if err := f.wd.close(); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(f.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove fleet directory: %w", err))
		}
		f.closeErr = errors.Join(errs...)
		f.log.Info("fleet stopped", "dir", f.Dir)
	})
	return f.closeErr
}

func copyFile(src, dst string, perm os.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = io.Copy(out, in)
	return err
}
