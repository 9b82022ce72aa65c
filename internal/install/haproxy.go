package install

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/yamlconf"
)

// HAProxy says how a certificate reaches a running HAProxy without a
// reload: the combined PEM file HAProxy loaded (a crt of a bind line) and
// the admin socket of its runtime API.
type HAProxy struct {
	Socket string // stats socket ... level admin
	Crt    string // the file as HAProxy names it (crt /path/x.pem)
}

var haproxyKeys = []string{"socket", "crt"}

// haproxy parses the haproxy: setting.
func (p *parser) haproxy(n *yaml.Node, key string) (*HAProxy, bool) {
	if yamlconf.IsNull(yamlconf.Deref(n)) {
		return nil, true
	}
	if d := yamlconf.Deref(n); d.Kind != yaml.MappingNode {
		p.Errorf(d, "%s: want a mapping {socket: ..., crt: ...}, got %s", key, yamlconf.Describe(d))
		return nil, false
	}
	h := &HAProxy{}
	for _, f := range p.Pairs(n, key) {
		switch f.Key.Value {
		case "socket":
			h.Socket, _ = p.Path(f.Val, key+".socket")
		case "crt":
			h.Crt, _ = p.Path(f.Val, key+".crt")
		default:
			p.Unknown(f.Key, key, haproxyKeys)
		}
	}
	if h.Socket == "" || h.Crt == "" {
		p.Errorf(yamlconf.Deref(n), "%s: socket and crt are both required", key)
		return nil, false
	}
	return h, true
}

// haproxyTimeout bounds one runtime API command.
const haproxyTimeout = 10 * time.Second

// ErrHAProxy wraps failures of HAProxy's runtime API.
var ErrHAProxy = errors.New("haproxy runtime API")

// haproxyUpdate writes the combined PEM of the live version of c (the
// fullchain, then the key; key_mode, owner and group as the key) to
// c.HAProxy.Crt and hands the same bytes to the running HAProxy: set ssl
// cert, then commit ssl cert; abort ssl cert when either fails. The file
// is what HAProxy reads when it (re)starts; the API is what it serves
// now.
func (in *Installer) haproxyUpdate(ctx context.Context, c *Cert) error {
	live := filepath.Join(in.liveDir(), c.Name)
	fullchain, err := os.ReadFile(filepath.Join(live, bundle.FullchainFile))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHAProxy, err)
	}
	key, err := os.ReadFile(filepath.Join(live, bundle.KeyFile))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHAProxy, err)
	}
	pem := combinedPEM(fullchain, key)
	own, err := in.owner(c)
	if err != nil {
		return err
	}
	if err := writeReplacing(c.HAProxy.Crt, pem, c.KeyMode, own); err != nil {
		return fmt.Errorf("%w: write %s: %v", ErrHAProxy, c.HAProxy.Crt, err)
	}
	start := time.Now()
	if err := HAProxySetCert(ctx, c.HAProxy.Socket, c.HAProxy.Crt, pem); err != nil {
		return err
	}
	in.log().Info("haproxy certificate updated", "cert", c.Name, "crt", c.HAProxy.Crt, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// combinedPEM is fullchain then key, without blank lines (the runtime
// API's payload ends at the first empty line).
func combinedPEM(fullchain, key []byte) []byte {
	var b bytes.Buffer
	for _, part := range [][]byte{fullchain, key} {
		for l := range strings.SplitSeq(string(part), "\n") {
			if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
				b.WriteString(l)
				b.WriteByte('\n')
			}
		}
	}
	return b.Bytes()
}

// HAProxySetCert replaces the certificate HAProxy serves from crt with
// pem (fullchain and key, no blank lines) through the runtime API at
// socket: set ssl cert, commit ssl cert, and abort ssl cert when either
// fails, so that no transaction is left open.
func HAProxySetCert(ctx context.Context, socket, crt string, pem []byte) error {
	if strings.ContainsAny(crt, " \n\r\t") {
		return fmt.Errorf("%w: crt path %q must not hold white space", ErrHAProxy, crt)
	}
	out, err := haproxyCommand(ctx, socket, "set ssl cert "+crt+" <<\n"+string(pem)+"\n")
	if err == nil && !strings.Contains(out, "Transaction created") && !strings.Contains(out, "Transaction updated") {
		err = fmt.Errorf("%w: set ssl cert %s: %s", ErrHAProxy, crt, oneLine(out))
	}
	if err == nil {
		out, err = haproxyCommand(ctx, socket, "commit ssl cert "+crt+"\n")
		if err == nil && !strings.Contains(out, "Success!") {
			err = fmt.Errorf("%w: commit ssl cert %s: %s", ErrHAProxy, crt, oneLine(out))
		}
	}
	if err != nil {
		haproxyCommand(context.WithoutCancel(ctx), socket, "abort ssl cert "+crt+"\n")
		return err
	}
	return nil
}

// haproxyCommand sends one command to the runtime API (non-interactive:
// HAProxy answers and closes) and returns the answer.
func haproxyCommand(ctx context.Context, socket, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, haproxyTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrHAProxy, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, cmd); err != nil {
		return "", fmt.Errorf("%w: %v", ErrHAProxy, err)
	}
	out, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return string(out), fmt.Errorf("%w: %v", ErrHAProxy, err)
	}
	return string(out), nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "no answer"
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// writeReplacing replaces path with data: a temporary file beside it,
// owned and moded before the first byte, renamed over it.
func writeReplacing(path string, data []byte, mode os.FileMode, own ids) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".certnode-"+hex.EncodeToString(rnd[:]))
	if err := writeOwned(tmp, data, mode, own); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

// serviceUpdate brings the service of c onto the live version: through
// HAProxy's runtime API when haproxy: is set, with reload as the fallback
// when that fails; else the reload.
func (in *Installer) serviceUpdate(ctx context.Context, c *Cert, env []string) error {
	if c.HAProxy != nil {
		err := in.haproxyUpdate(ctx, c)
		if err == nil {
			return nil
		}
		if len(c.Reload) == 0 {
			return fmt.Errorf("%w: %v", ErrReloadFailed, err)
		}
		in.log().Warn("haproxy runtime API failed; reloading instead", "cert", c.Name, "error", err)
	}
	if len(c.Reload) > 0 {
		if err := in.command(ctx, "reload", c.Reload, env); err != nil {
			return fmt.Errorf("%w: %v", ErrReloadFailed, err)
		}
	}
	return nil
}
