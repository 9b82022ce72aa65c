package push

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/wire"
)

// sshHost is an in-process SSH server on a loopback port: SFTP over the
// real file system, and an exec request that answers like
// `certnode install --json --stdin`: it reads the bundle stream, answers
// unchanged for the bundle it has (installed) and otherwise a canned
// result.
type sshHost struct {
	t        *testing.T
	addr     string
	keys     []ssh.Signer // host keys, in the order the server offers them
	incoming string       // a temp dir, the host's incoming directory
	result   string       // what the canned install reports
	// installed is the bundle id the host has; an install sets it.
	installed string
	// previous, when set, is reported as the previous id instead.
	previous string
	// refuse, when set, is what an exec writes to stderr before exiting
	// 1 without a result, like a forced command refusing it.
	refuse string

	mu    sync.Mutex
	auths int      // authentication attempts
	execs []string // commands run
}

// startHost starts a server with the given host keys (one ed25519 key when
// none is given) that accepts client.
func startHost(t *testing.T, client ssh.PublicKey, keys ...ssh.Signer) *sshHost {
	t.Helper()
	if len(keys) == 0 {
		keys = []ssh.Signer{newSigner(t, "ed25519")}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &sshHost{t: t, addr: l.Addr().String(), keys: keys, incoming: t.TempDir(), result: wire.Installed}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		h.mu.Lock()
		h.auths++
		h.mu.Unlock()
		if string(k.Marshal()) != string(client.Marshal()) {
			return nil, errors.New("unknown client key")
		}
		return &ssh.Permissions{}, nil
	}}
	for _, k := range keys {
		cfg.AddHostKey(k)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { h.serveConn(c, cfg) })
		}
	})
	return h
}

func (h *sshHost) serveConn(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Go(func() { h.serveSession(ch, reqs) })
	}
}

func (h *sshHost) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "subsystem":
			req.Reply(true, nil)
			srv, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			srv.Serve()
			return
		case "exec":
			var cmd struct{ Command string }
			ssh.Unmarshal(req.Payload, &cmd)
			req.Reply(true, nil)
			h.mu.Lock()
			h.execs = append(h.execs, cmd.Command)
			refuse := h.refuse
			h.mu.Unlock()
			if refuse != "" {
				ch.Stderr().Write([]byte(refuse + "\n"))
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
				return
			}
			r := h.answer(cmd.Command, ch)
			out, _ := json.Marshal(wire.InstallOutput{Results: []wire.InstallResult{r}})
			ch.Write(out)
			status := uint32(0)
			if !wire.Succeeded(r.Result) {
				status = 1
			}
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// answer is what certnode install --stdin would report for command with
// the bundle stream read from stdin.
func (h *sshHost) answer(command string, stdin io.Reader) wire.InstallResult {
	r := wire.InstallResult{Cert: certName}
	files, err := wire.DecodeStream(stdin, append([]string{bundle.ManifestFile}, bundle.Files...), bundle.MaxFileSize)
	if !strings.Contains(command, " --stdin") || err != nil {
		r.Result, r.Error = wire.Refused, fmt.Sprintf("no bundle stream: %v", err)
		return r
	}
	m, err := bundle.ParseManifest(files[bundle.ManifestFile])
	if err != nil {
		r.Result, r.Error = wire.Refused, err.Error()
		return r
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	r.ID, r.Previous = m.ID, h.installed
	if h.previous != "" {
		r.Previous = h.previous
	}
	switch {
	case h.installed == m.ID && !strings.Contains(command, " --force"):
		r.Result = wire.Unchanged
	case strings.Contains(command, " --dry-run"):
		r.Result = wire.WouldInstall
	default:
		r.Result = h.result
		if r.Result == wire.Installed {
			h.installed = m.ID
		}
	}
	return r
}

func (h *sshHost) inventory() inventory.Host {
	host, port, _ := net.SplitHostPort(h.addr)
	p, _ := strconv.Atoi(port)
	return inventory.Host{Name: "node-" + port, Address: host, Port: p, User: "certsync", Incoming: h.incoming, Command: "certnode"}
}

func (h *sshHost) counts() (auths int, execs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.auths, append([]string(nil), h.execs...)
}

func newSigner(t *testing.T, kind string) ssh.Signer {
	t.Helper()
	var (
		s   ssh.Signer
		err error
	)
	switch kind {
	case "ed25519":
		var k ed25519.PrivateKey
		if _, k, err = ed25519.GenerateKey(rand.Reader); err == nil {
			s, err = ssh.NewSignerFromKey(k)
		}
	case "ecdsa":
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err == nil {
			s, err = ssh.NewSignerFromKey(k)
		}
	}
	if err != nil || s == nil {
		t.Fatalf("key %s: %v", kind, err)
	}
	return s
}

// writeKnownHosts writes a known_hosts file with one line per address and
// key.
func writeKnownHosts(t *testing.T, lines map[string]ssh.PublicKey) string {
	t.Helper()
	var data []byte
	for addr, k := range lines {
		data = append(data, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k)+"\n"...)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const certName = "example.test"

// newBundle writes a bundle for certName and opens it.
func newBundle(t *testing.T) *bundle.Bundle {
	t.Helper()
	ca, err := devca.New("push-test")
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(devca.Leaf{Domains: []string{certName}})
	if err != nil {
		t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	if err != nil {
		t.Fatal(err)
	}
	m := bundle.NewManifest(certName, mat, "import", time.Now())
	dir := filepath.Join(t.TempDir(), certName, m.ID)
	if err := bundle.Write(dir, mat, m); err != nil {
		t.Fatal(err)
	}
	b, err := bundle.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
