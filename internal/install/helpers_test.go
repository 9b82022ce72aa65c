package install

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/testlog"
)

// node is a certnode root, an incoming directory, a CA that issues test
// certificates, a signing key, and scripts that act as the service's
// config test and reload.
type node struct {
	t        *testing.T
	dir      string
	root     string
	incoming string
	marks    string // where the scripts leave their traces
	ca       *devca.CA
	signer   *bundle.Signer
	server   *tlsServer
	cfg      *Config
	in       *Installer
}

type nodeOptions struct {
	certs      []string // default: example.com
	keep       int
	noVerify   bool
	extra      string // more YAML for each cert
	reloadWait bool   // the reload script takes a while and logs start/end
}

func newNode(t *testing.T, o nodeOptions) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{
		t:        t,
		dir:      dir,
		root:     filepath.Join(dir, "etc"),
		incoming: filepath.Join(dir, "incoming"),
		marks:    filepath.Join(dir, "marks"),
	}
	for _, d := range []string{n.incoming, n.marks} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := devca.New("certnode test")
	if err != nil {
		t.Fatal(err)
	}
	n.ca = ca
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n.signer = bundle.NewSigner(key)

	testScript := n.script("test.sh", `echo "$CERTNODE_NAME $CERTNODE_ID $CERTNODE_LIVE_DIR" >> MARKS/test.log
if [ -f MARKS/test.fail ]; then echo "emerg: cannot load certificate" >&2; exit 1; fi
`)
	reload := `echo "$CERTNODE_NAME $CERTNODE_ID" >> MARKS/reload.log
if [ -f MARKS/reload.fail ]; then rm MARKS/reload.fail; echo "reload refused" >&2; exit 1; fi
`
	if o.reloadWait {
		reload = `echo "start $CERTNODE_NAME" >> MARKS/span.log
sleep 0.2
echo "end $CERTNODE_NAME" >> MARKS/span.log
`
	}
	reloadScript := n.script("reload.sh", reload)

	if len(o.certs) == 0 {
		o.certs = []string{"example.com"}
	}
	if o.keep == 0 {
		o.keep = 3
	}
	verifyLine := ""
	if !o.noVerify {
		n.server = startTLS(t, filepath.Join(n.root, "live"))
		verifyLine = fmt.Sprintf("  verify: [%q]\n  verify_timeout: 2s\n", n.server.addr)
	}
	var certs strings.Builder
	for _, c := range o.certs {
		fmt.Fprintf(&certs, "  %s:\n    domains: [%s, \"*.%s\"]\n%s", c, c, c, o.extra)
	}
	roots := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(roots, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`root: %s
incoming: %s
trusted_keys: [%q]
roots: %s
keep: %d
timeout: 10s
defaults:
  test: [%s]
  reload: [%s]
%scerts:
%s`, n.root, n.incoming, n.signer.PublicKey(), roots, o.keep, testScript, reloadScript, verifyLine, certs.String())
	cfg, err := ParseConfig(filepath.Join(dir, "certnode.yaml"), []byte(yaml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	n.cfg = cfg
	n.in = n.installer()
	return n
}

func (n *node) installer() *Installer {
	return &Installer{
		Config: n.cfg,
		Logger: testlog.Logger(n.t),
	}
}

func (n *node) script(name, body string) string {
	n.t.Helper()
	p := filepath.Join(n.dir, name)
	body = "#!/bin/sh\n" + strings.ReplaceAll(body, "MARKS", n.marks)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// mark creates or removes a file that the scripts look at.
func (n *node) mark(name string, on bool) {
	n.t.Helper()
	p := filepath.Join(n.marks, name)
	if on {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			n.t.Fatal(err)
		}
		return
	}
	os.Remove(p)
}

// lines returns the lines a script logged to marks/name.
func (n *node) lines(name string) []string {
	data, err := os.ReadFile(filepath.Join(n.marks, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

type bundleOptions struct {
	domains   []string
	notBefore time.Time // default: an hour ago
	notAfter  time.Time
	signer    *bundle.Signer // default: the node's trusted signer
	unsigned  bool
	noPush    bool // only build it
}

type testBundle struct {
	name string
	id   string
	mat  *bundle.Material
	m    *bundle.Manifest
	dir  string // in incoming
}

// bundle issues a certificate for name and writes a signed bundle of it
// into incoming, as certpush would.
func (n *node) bundle(name string, o bundleOptions) *testBundle {
	n.t.Helper()
	if o.domains == nil {
		o.domains = []string{name, "*." + name}
	}
	iss, err := n.ca.Issue(devca.Leaf{Domains: o.domains, NotBefore: o.notBefore, NotAfter: o.notAfter})
	if err != nil {
		n.t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		n.t.Fatal(err)
	}
	m := bundle.NewManifest(name, mat, bundle.SourceImport, time.Now())
	if !o.unsigned {
		s := o.signer
		if s == nil {
			s = n.signer
		}
		if err := s.Sign(m); err != nil {
			n.t.Fatal(err)
		}
	}
	b := &testBundle{name: name, id: mat.ID(), mat: mat, m: m, dir: filepath.Join(n.incoming, name, mat.ID())}
	if !o.noPush {
		n.push(b)
	}
	return b
}

// push writes b into incoming (again).
func (n *node) push(b *testBundle) {
	n.t.Helper()
	os.RemoveAll(b.dir)
	if err := bundle.Write(b.dir, b.mat, b.m); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) install(names []string, opts Options) []Result {
	n.t.Helper()
	res, err := n.in.Install(context.Background(), names, opts)
	if err != nil {
		n.t.Fatalf("install: %v", err)
	}
	return res
}

// installOne installs name and checks the result.
func (n *node) installOne(name string, opts Options, want string) Result {
	n.t.Helper()
	res := n.install([]string{name}, opts)
	if len(res) != 1 {
		n.t.Fatalf("%d results, want 1: %+v", len(res), res)
	}
	if res[0].Result != want {
		n.t.Fatalf("result %q (error %q), want %q", res[0].Result, res[0].Error, want)
	}
	return res[0]
}

// liveTarget returns the target of live/<name>, "" when there is none.
func (n *node) liveTarget(name string) string {
	n.t.Helper()
	target, err := os.Readlink(filepath.Join(n.root, "live", name))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		n.t.Fatal(err)
	}
	return target
}

func (n *node) wantLive(name, id string) {
	n.t.Helper()
	want := ""
	if id != "" {
		want = filepath.Join("..", "archive", name, id)
	}
	if got := n.liveTarget(name); got != want {
		n.t.Fatalf("live/%s -> %q, want %q", name, got, want)
	}
}

func (n *node) exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// tlsServer stands for the service: it serves live/<name>/fullchain.pem
// and privkey.pem, read at every handshake, unless pinned to one
// certificate.
type tlsServer struct {
	addr string
	mu   sync.Mutex
	pin  *tls.Certificate
}

func startTLS(t *testing.T, live string) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	cfg := &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			pin := s.pin
			s.mu.Unlock()
			if pin != nil {
				return pin, nil
			}
			name := hello.ServerName
			if i := strings.IndexByte(name, '.'); i >= 0 && name[:i] == "www" {
				name = name[i+1:]
			}
			dir := filepath.Join(live, name)
			c, err := tls.LoadX509KeyPair(filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"))
			if err != nil {
				return nil, err
			}
			return &c, nil
		},
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func(c net.Conn) {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
			}(c)
		}
	}()
	return s
}

// pinTo makes the server serve b's certificate whatever live says.
func (s *tlsServer) pinTo(t *testing.T, b *testBundle) {
	t.Helper()
	c, err := tls.X509KeyPair(b.mat.Fullchain(), b.mat.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.pin = &c
	s.mu.Unlock()
}
