package testfleet

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/testproc"
	"github.com/certpush/certpush/internal/verify"
)

// Paths of the daemons the fleet runs.
const (
	SSHD       = "/usr/sbin/sshd"
	Nginx      = "/usr/sbin/nginx"
	SFTPServer = "/usr/lib/openssh/sftp-server"
)

// readyTimeout bounds how long a daemon gets to answer after it starts.
const readyTimeout = 15 * time.Second

// startAttempts is how many ports a host tries when one turns out taken.
const startAttempts = 3

// Host is one host of the fleet: an sshd and an nginx on loopback ports.
type Host struct {
	Name                       string
	SSHPort, TLSPort, HTTPPort int

	Dir            string // the host's directory
	Root           string // certnode root: archive/, live/
	Incoming       string // where pushes land
	Webroot        string // nginx serves Webroot/.well-known/acme-challenge/
	NginxPrefix    string // nginx prefix: nginx.conf, nginx.pid, error.log
	NginxConfig    string
	CertnodeConfig string // certnode.yaml for this host
	// Command is the remote command that runs certnode with this host's
	// config, "" when the fleet has no certnode binary.
	Command string
	// NginxTest and NginxReload are the argv certnode.yaml gives as the
	// service's config test and reload; nil on a fleet without nginx.
	NginxTest, NginxReload []string

	SSHConfig string // sshd_config
	HostKey   ssh.PublicKey
	// SSHLog is sshd's log (LogLevel VERBOSE). Readiness probes show as
	// connections that never authenticate; count "Accepted publickey"
	// lines (see Logins) to count sessions.
	SSHLog string

	BootstrapID          string // bundle id of the bootstrap certificate
	BootstrapFingerprint string // SHA-256 (lowercase hex) of its leaf

	fleet    *Fleet
	hostKey  string // path of the host key
	hostCert string // path of sshd's HostCertificate, "" for none
	mu       sync.Mutex
	sshd     *proc
	nginx    *proc
}

// SSHAddr is the address sshd listens on.
func (h *Host) SSHAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.SSHPort)) }

// TLSAddr is the address nginx serves TLS on.
func (h *Host) TLSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.TLSPort)) }

// HTTPAddr is the address nginx serves plain HTTP (ACME http-01) on.
func (h *Host) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.HTTPPort)) }

// SSHPID returns the pid of the running sshd, or 0.
func (h *Host) SSHPID() int { return h.pidOf(&h.sshd) }

// NginxPID returns the pid of the running nginx master, or 0.
func (h *Host) NginxPID() int { return h.pidOf(&h.nginx) }

func (h *Host) pidOf(p **proc) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *p == nil || (*p).Exited() {
		return 0
	}
	return (*p).Pid()
}

// Logins counts the public-key logins sshd has accepted so far.
func (h *Host) Logins() (int, error) {
	data, err := os.ReadFile(h.SSHLog)
	if err != nil {
		return 0, fmt.Errorf("read sshd log: %w", err)
	}
	return bytes.Count(data, []byte("Accepted publickey for ")), nil
}

// start lays out the host's directory and starts sshd and nginx.
func (h *Host) start(ctx context.Context, opts Options, authorized []byte) error {
	f := h.fleet
	h.Dir = filepath.Join(f.Dir, h.Name)
	h.Root = filepath.Join(h.Dir, "root")
	h.Incoming = filepath.Join(h.Dir, "incoming")
	h.Webroot = filepath.Join(h.Dir, "webroot")
	h.NginxPrefix = filepath.Join(h.Dir, "nginx")
	h.NginxConfig = filepath.Join(h.NginxPrefix, "nginx.conf")
	h.CertnodeConfig = filepath.Join(h.Dir, "certnode.yaml")
	sshDir := filepath.Join(h.Dir, "ssh")
	h.SSHConfig = filepath.Join(sshDir, "sshd_config")
	h.SSHLog = filepath.Join(sshDir, "sshd.log")
	h.hostKey = filepath.Join(sshDir, "ssh_host_ed25519_key")
	if f.Certnode != "" {
		h.Command = f.Certnode + " --config " + h.CertnodeConfig
	}
	nginxArgs := []string{"-p", h.NginxPrefix, "-e", filepath.Join(h.NginxPrefix, "error.log"), "-c", h.NginxConfig}
	if !f.NoNginx {
		h.NginxTest = append([]string{Nginx, "-t", "-q"}, nginxArgs...)
		h.NginxReload = append([]string{Nginx, "-s", "reload"}, nginxArgs...)
	}

	for _, d := range []string{h.Dir, sshDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	for _, d := range []string{h.Root, h.Incoming, h.Webroot, h.NginxPrefix, filepath.Join(h.Webroot, ".well-known"), filepath.Join(h.Webroot, ".well-known", "acme-challenge")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
		if err := f.acct.chown(d); err != nil {
			return err
		}
	}
	var err error
	if h.HostKey, err = writeSSHKey(h.hostKey, h.Name); err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	// sshd reads authorized_keys as the user it logs in.
	if err := os.WriteFile(filepath.Join(sshDir, "authorized_keys"), authorized, 0o644); err != nil {
		return err
	}

	now := time.Now()
	mat, err := bootstrapMaterial(f.CA, f.Domains, opts.BootstrapValidity, now)
	if err != nil {
		return err
	}
	if h.BootstrapID, err = installBootstrap(h.Root, f.CertName, f.Domains, mat, f.Signer, now); err != nil {
		return err
	}
	h.BootstrapFingerprint = mat.Fingerprint()
	if err := f.acct.chownTree(h.Root); err != nil {
		return err
	}

	if err := h.startSSHFresh(ctx); err != nil {
		return err
	}
	if !f.NoNginx {
		if err := h.startNginxFresh(ctx); err != nil {
			return err
		}
	}
	return h.writeCertnodeConfig(opts.TrustedKey)
}

// startSSHFresh picks a port and starts sshd, trying another port when the
// one picked was taken in between.
func (h *Host) startSSHFresh(ctx context.Context) error {
	var err error
	for range startAttempts {
		if h.SSHPort, err = testproc.FreePort(); err != nil {
			return err
		}
		if err = h.writeSSHConfig(); err != nil {
			return err
		}
		err = h.StartSSH(ctx)
		if !errors.Is(err, errPortTaken) {
			return err
		}
		h.fleet.log.Debug("ssh port taken, trying another", "host", h.Name, "port", h.SSHPort)
	}
	return err
}

// startNginxFresh is startSSHFresh for nginx's two ports.
func (h *Host) startNginxFresh(ctx context.Context) error {
	var err error
	for range startAttempts {
		if h.TLSPort, err = testproc.FreePort(); err != nil {
			return err
		}
		if h.HTTPPort, err = testproc.FreePort(); err != nil {
			return err
		}
		if err = h.writeNginxConfig(""); err != nil {
			return err
		}
		err = h.StartNginx(ctx)
		if !errors.Is(err, errPortTaken) {
			return err
		}
		h.fleet.log.Debug("nginx port taken, trying others", "host", h.Name, "tls_port", h.TLSPort, "http_port", h.HTTPPort)
	}
	return err
}

var errPortTaken = errors.New("port already in use")

func (h *Host) writeSSHConfig() error {
	conf := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp %s
AllowUsers %s
LogLevel VERBOSE
MaxStartups 200
PerSourceMaxStartups none
UseDNS no
`, h.SSHPort, h.hostKey, filepath.Join(filepath.Dir(h.SSHConfig), "sshd.pid"),
		filepath.Join(filepath.Dir(h.SSHConfig), "authorized_keys"), SFTPServer, h.fleet.User)
	if h.hostCert != "" {
		conf += "HostCertificate " + h.hostCert + "\n"
	}
	return os.WriteFile(h.SSHConfig, []byte(conf), 0o644)
}

// StartSSH starts sshd on the host's port with its current host key and
// waits until it sends its banner. It is a no-op when sshd runs.
func (h *Host) StartSSH(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sshd != nil && !h.sshd.Exited() {
		return nil
	}
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return fmt.Errorf("start sshd: %w", err)
		}
	}
	p, err := startProc("sshd", []string{SSHD, "-D", "-e", "-f", h.SSHConfig}, h.SSHLog, nil, h.fleet.wd)
	if err != nil {
		return err
	}
	h.sshd = p
	if err := waitReady(ctx, p, h.SSHLog, "Address already in use", func(ctx context.Context) error {
		return sshBanner(ctx, h.SSHAddr())
	}); err != nil {
		_ = p.stop()
		return fmt.Errorf("start sshd on %s: %w", h.SSHAddr(), err)
	}
	h.fleet.log.Debug("sshd ready", "host", h.Name, "addr", h.SSHAddr(), "pid", p.Pid())
	return nil
}

// StopSSH stops sshd and every session it runs, as if the host were down.
func (h *Host) StopSSH() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sshd == nil {
		return nil
	}
	return h.sshd.stop()
}

// ReplaceHostKey gives the host a new host key and restarts sshd with it,
// leaving known_hosts as it is, so that clients see a changed host key.
func (h *Host) ReplaceHostKey(ctx context.Context) error {
	if err := h.StopSSH(); err != nil {
		return err
	}
	key, err := writeSSHKey(h.hostKey, h.Name)
	if err != nil {
		return fmt.Errorf("replace host key: %w", err)
	}
	h.HostKey = key
	return h.StartSSH(ctx)
}

// SetHostCertificate restarts sshd presenting cert (an OpenSSH host
// certificate of HostKey, as ssh-keygen -s CA -h writes it) besides its
// plain host key; nil presents the plain key alone again.
func (h *Host) SetHostCertificate(ctx context.Context, cert []byte) error {
	if err := h.StopSSH(); err != nil {
		return err
	}
	h.hostCert = ""
	if cert != nil {
		path := h.hostKey + "-cert.pub"
		if err := os.WriteFile(path, cert, 0o644); err != nil {
			return fmt.Errorf("host certificate: %w", err)
		}
		h.hostCert = path
	}
	if err := h.writeSSHConfig(); err != nil {
		return fmt.Errorf("host certificate: %w", err)
	}
	return h.StartSSH(ctx)
}

// sshBanner connects to addr and reads the SSH identification line.
func sshBanner(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected banner %q", line)
	}
	return nil
}

// waitReady polls ready until it succeeds, the process exits, or the time
// is up. An exit whose log mentions taken says errPortTaken.
func waitReady(ctx context.Context, p *proc, logPath, taken string, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	delay := 5 * time.Millisecond
	for {
		if p.Exited() {
			out := testproc.Tail(logPath, 600)
			if strings.Contains(out, taken) {
				return fmt.Errorf("%w: %s", errPortTaken, out)
			}
			return fmt.Errorf("exited (%v): %s", p.Err(), out)
		}
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last: %v): %s", ctx.Err(), err, testproc.Tail(logPath, 600))
		case <-p.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// writeNginxConfig writes nginx.conf; extra is added at the top level.
func (h *Host) writeNginxConfig(extra string) error {
	p := h.NginxPrefix
	names := append(append([]string(nil), h.fleet.Domains...), "_")
	live := filepath.Join(h.Root, "live", h.fleet.CertName)
	conf := fmt.Sprintf(`# nginx for test host %[1]s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
%[8]s
events {
    worker_connections 256;
}

http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body_temp;
    proxy_temp_path %[2]s/proxy_temp;
    fastcgi_temp_path %[2]s/fastcgi_temp;
    uwsgi_temp_path %[2]s/uwsgi_temp;
    scgi_temp_path %[2]s/scgi_temp;
    default_type text/plain;

    server {
        listen 127.0.0.1:%[3]d ssl default_server;
        server_name %[4]s;
        ssl_certificate %[5]s/fullchain.pem;
        ssl_certificate_key %[5]s/privkey.pem;
        location / {
            return 200 "ok\n";
        }
    }

    server {
        listen 127.0.0.1:%[6]d default_server;
        server_name _;
        location /.well-known/acme-challenge/ {
            root %[7]s;
            default_type text/plain;
        }
        location / {
            return 200 "ok\n";
        }
    }
}
`, h.Name, p, h.TLSPort, strings.Join(names, " "), live, h.HTTPPort, h.Webroot, extra)
	if err := os.WriteFile(h.NginxConfig, []byte(conf), 0o644); err != nil {
		return err
	}
	return h.fleet.acct.chown(h.NginxConfig)
}

// StartNginx starts nginx as the fleet user on the host's ports and waits
// until it completes a TLS handshake. It is a no-op when nginx runs.
func (h *Host) StartNginx(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nginx != nil && !h.nginx.Exited() {
		return nil
	}
	logPath := filepath.Join(h.NginxPrefix, "error.log")
	argv := []string{Nginx, "-p", h.NginxPrefix, "-e", logPath, "-c", h.NginxConfig, "-g", "daemon off;"}
	p, err := startProc("nginx", argv, filepath.Join(h.NginxPrefix, "stderr.log"), h.fleet.acct.cred(), h.fleet.wd)
	if err != nil {
		return err
	}
	h.nginx = p
	sni := verify.DefaultSNI(h.fleet.Domains)
	if err := waitReady(ctx, p, logPath, "Address already in use", func(ctx context.Context) error {
		return tlsHandshake(ctx, h.TLSAddr(), sni)
	}); err != nil {
		_ = p.stop()
		return fmt.Errorf("start nginx on %s: %w", h.TLSAddr(), err)
	}
	h.fleet.log.Debug("nginx ready", "host", h.Name, "addr", h.TLSAddr(), "pid", p.Pid())
	return nil
}

// StopNginx stops nginx, master and workers.
func (h *Host) StopNginx() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nginx == nil {
		return nil
	}
	return h.nginx.stop()
}

func tlsHandshake(ctx context.Context, addr, sni string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{ServerName: sni, InsecureSkipVerify: true}} //nolint:gosec // readiness only
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// brokenDirective is not an nginx directive, so `nginx -t` fails on it.
const brokenDirective = "certpush_fleet_broken on;"

// BreakNginxConfig makes the host's nginx.conf invalid, so that `nginx -t`
// and `nginx -s reload` fail, while the running nginx keeps serving.
func (h *Host) BreakNginxConfig() error {
	if err := h.writeNginxConfig(brokenDirective); err != nil {
		return fmt.Errorf("break nginx config: %w", err)
	}
	return nil
}

// FixNginxConfig restores the host's valid nginx.conf.
func (h *Host) FixNginxConfig() error {
	if err := h.writeNginxConfig(""); err != nil {
		return fmt.Errorf("fix nginx config: %w", err)
	}
	return nil
}

// ServedFingerprint does a TLS handshake with the host's nginx using sni
// ("" for the default name of the fleet's domains) and returns the SHA-256
// (lowercase hex) of the leaf certificate it presents.
func (h *Host) ServedFingerprint(ctx context.Context, sni string) (string, error) {
	if sni == "" {
		sni = verify.DefaultSNI(h.fleet.Domains)
	}
	s, err := verify.Probe(ctx, h.TLSAddr(), sni, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("host %s: %w", h.Name, err)
	}
	return s.Fingerprint, nil
}

// stopAll stops both daemons.
func (h *Host) stopAll() error {
	var errs []error
	if err := h.StopNginx(); err != nil {
		errs = append(errs, err)
	}
	if err := h.StopSSH(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	return nil
}
