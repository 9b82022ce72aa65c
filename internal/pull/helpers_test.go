package pull

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/testlog"
	"github.com/certpush/certpush/internal/teststore"
)

const name = "example.com"

// world is a management side (CA, signing key, bundle store), a store
// and the age recipients of the nodes.
type world struct {
	t          testing.TB
	ca         *devca.CA
	signer     *bundle.Signer
	bundles    *bundle.Store
	st         store.Store
	recipients []string
	// nodeIdentity is a file with the nodes' age identity; sshIdentity an
	// SSH host key that is a recipient too.
	nodeIdentity, sshIdentity string
	roots                     string
}

// backends runs f against a directory store and a versitygw store.
func backends(t *testing.T, f func(t *testing.T, w *world)) {
	t.Run("file", func(t *testing.T) {
		f(t, newWorld(t, &store.Config{URL: "file://" + filepath.Join(t.TempDir(), "store")}))
	})
	t.Run("s3", func(t *testing.T) {
		srv := teststore.Start(t)
		f(t, newWorld(t, srv.Config("certs")))
	})
}

func newWorld(t testing.TB, sc *store.Config) *world {
	t.Helper()
	ca, err := devca.New("pull test")
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := store.Open(context.Background(), sc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := &world{t: t, ca: ca, signer: bundle.NewSigner(key), bundles: &bundle.Store{Dir: filepath.Join(dir, "bundles")}, st: st}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	w.nodeIdentity = filepath.Join(dir, "node.age")
	if err := os.WriteFile(w.nodeIdentity, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	w.sshIdentity = filepath.Join(dir, "ssh_host_ed25519_key")
	if err := os.WriteFile(w.sshIdentity, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	w.recipients = []string{id.Recipient().String(), string(ssh.MarshalAuthorizedKey(sshPub))}
	w.roots = filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(w.roots, ca.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) publisher() *Publisher {
	return &Publisher{Store: w.st, Signer: w.signer, Recipients: w.recipients, Logger: testlog.Logger(w.t)}
}

// issue makes a new current bundle issued at notBefore.
func (w *world) issue(notBefore time.Time) *bundle.Bundle {
	w.t.Helper()
	iss, err := w.ca.Issue(devca.Leaf{Domains: []string{name}, NotBefore: notBefore})
	if err != nil {
		w.t.Fatal(err)
	}
	mat, err := bundle.ParseMaterial(iss.Cert, iss.Chain, iss.Key)
	if err != nil {
		w.t.Fatal(err)
	}
	b, _, err := w.bundles.Add(name, mat, bundle.AddOptions{Domains: []string{name}, Source: bundle.SourceImport, Signer: w.signer, Now: time.Now(), AllowOlder: true, Anchor: bundle.Anchor{Roots: w.ca.Pool()}})
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

func (w *world) publish(b *bundle.Bundle) PublishResult {
	w.t.Helper()
	r, err := w.publisher().Publish(context.Background(), b, PublishOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// node is a certnode with an empty root that pulls from the world's
// store with identity.
func (w *world) node(identity string) *Puller { return w.nodeWith(identity, "") }

// nodeWith is node with more YAML at the top level (a defaults: section).
func (w *world) nodeWith(identity, extra string) *Puller {
	w.t.Helper()
	dir := w.t.TempDir()
	yaml := fmt.Sprintf(`root: %s/etc
incoming: %s/incoming
trusted_keys: [%q]
roots: %s
%scerts:
  %s: {}
`, dir, dir, w.signer.PublicKey(), w.roots, extra, name)
	cfg, err := install.ParseConfig(filepath.Join(dir, "certnode.yaml"), []byte(yaml))
	if err != nil {
		w.t.Fatal(err)
	}
	ids, err := store.LoadIdentity(identity)
	if err != nil {
		w.t.Fatal(err)
	}
	return &Puller{Store: w.st, Installer: &install.Installer{Config: cfg, Logger: testlog.Logger(w.t)}, Identities: ids, NodeID: "node-" + filepath.Base(dir), Logger: testlog.Logger(w.t)}
}

func pullOne(t testing.TB, p *Puller) Result {
	t.Helper()
	rs, err := p.Pull(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	return rs[0]
}

// live is the id installed on the node.
func live(t testing.TB, p *Puller) string {
	t.Helper()
	target, err := os.Readlink(filepath.Join(p.Installer.Config.Root, "live", name))
	if err != nil {
		return ""
	}
	return filepath.Base(target)
}

type ed25519PublicKey = ed25519.PublicKey

func startServer(t testing.TB) *teststore.Server { return teststore.Start(t) }

func nil2file(t testing.TB) *store.Config {
	return &store.Config{URL: "file://" + filepath.Join(t.TempDir(), "store")}
}
