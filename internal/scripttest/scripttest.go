// Package scripttest runs the CLI test scripts of certpush and certnode
// (testscript files under cmd/*/testdata/script) with the commands they
// share: exits, expand, mkcert, mkbundle, perm and tree.
package scripttest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/devca"
)

// signer signs the bundles mkbundle makes. Its key is fixed so that a
// script can name it; scripts see its public key as $TRUSTED_KEY.
var signer = bundle.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x5c}, ed25519.SeedSize)))

// ca issues the certificates mkcert and mkbundle make; each script finds
// its root in $WORK/roots.pem, also named by $ROOTS, for a roots: key.
var ca = sync.OnceValues(func() (*devca.CA, error) { return devca.New("script test") })

// Run runs every script in testdata/script. The programs the scripts
// call must have been registered with testscript.Main in TestMain.
func Run(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("TRUSTED_KEY", signer.PublicKey())
			c, err := ca()
			if err != nil {
				return err
			}
			roots := filepath.Join(e.WorkDir, "roots.pem")
			e.Setenv("ROOTS", roots)
			return os.WriteFile(roots, c.RootPEM(), 0o644)
		},
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exits":    exits,
			"expand":   expand,
			"mkcert":   mkcert,
			"mkbundle": mkbundle,
			"perm":     perm,
			"tree":     tree,
		},
	})
}

// exits N PROGRAM [ARGS...] runs the program and fails unless it exits
// with status N. Its stdout and stderr are kept for the next stdout and
// stderr commands, as exec keeps them.
func exits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("%s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// expand FILE... replaces $VAR and ${VAR} in each file with the
// script's environment ($WORK, $TRUSTED_KEY, ...).
func expand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: expand FILE...")
	}
	for _, f := range args {
		data := os.Expand(ts.ReadFile(f), ts.Getenv)
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(data), 0o644))
	}
}

// issue makes a certificate for domains from the scripts' test CA, valid for
// o.days from now (negative: expired that long ago), issued o.issued
// days ago (or 30 days before it expired, for an expired one).
func issue(ts *testscript.TestScript, o options, domains []string) *devca.Issued {
	c, err := ca()
	ts.Check(err)
	day := 24 * time.Hour
	l := devca.Leaf{Domains: domains, NotAfter: time.Now().Add(time.Duration(o.days) * day)}
	switch {
	case o.issued > 0:
		l.NotBefore = time.Now().Add(-time.Duration(o.issued) * day)
	case o.days < 0:
		l.NotBefore = l.NotAfter.Add(-30 * day)
	}
	if o.self {
		is, err := devca.SelfSigned(l)
		ts.Check(err)
		return is
	}
	is, err := c.Issue(l)
	ts.Check(err)
	return is
}

// options are the flags of mkcert and mkbundle.
type options struct {
	days     int  // -days N: valid for N days from now (default 60)
	issued   int  // -issued N: issued N days ago (default: now)
	unsigned bool // -unsigned: mkbundle leaves the manifest unsigned
	self     bool // -self: a self-signed certificate, no chain
}

// flags splits the leading -days N and -unsigned off args.
func flags(ts *testscript.TestScript, args []string) (options, []string) {
	o := options{days: 60}
	for len(args) > 0 {
		switch {
		case len(args) >= 2 && args[0] == "-days":
			d, err := strconv.Atoi(args[1])
			ts.Check(err)
			o.days, args = d, args[2:]
		case len(args) >= 2 && args[0] == "-issued":
			d, err := strconv.Atoi(args[1])
			ts.Check(err)
			o.issued, args = d, args[2:]
		case args[0] == "-unsigned":
			o.unsigned, args = true, args[1:]
		case args[0] == "-self":
			o.self, args = true, args[1:]
		default:
			return o, args
		}
	}
	return o, args
}

// mkcert [-days N] [-issued N] [-self] DIR DOMAIN... writes cert.pem, chain.pem and key.pem
// (mode 0600) for the domains into DIR, as a CA or certbot would hand
// them over.
func mkcert(ts *testscript.TestScript, neg bool, args []string) {
	o, args := flags(ts, args)
	if neg || len(args) < 2 || o.unsigned {
		ts.Fatalf("usage: mkcert [-days N] [-issued N] [-self] DIR DOMAIN...")
	}
	dir := ts.MkAbs(args[0])
	is := issue(ts, o, args[1:])
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(os.WriteFile(filepath.Join(dir, "cert.pem"), is.Cert, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "chain.pem"), is.Chain, 0o644))
	ts.Check(os.WriteFile(filepath.Join(dir, "key.pem"), is.Key, 0o600))
}

// mkbundle [-days N] [-issued N] [-unsigned] [-self] INCOMING NAME DOMAIN... writes a bundle
// for the domains, signed by the key $TRUSTED_KEY names (or not at all),
// to INCOMING/NAME/ID as certpush uploads it, and sets $ID to its id.
func mkbundle(ts *testscript.TestScript, neg bool, args []string) {
	o, args := flags(ts, args)
	if neg || len(args) < 3 {
		ts.Fatalf("usage: mkbundle [-days N] [-issued N] [-unsigned] [-self] INCOMING NAME DOMAIN...")
	}
	is := issue(ts, o, args[2:])
	mat, err := bundle.ParseMaterial(is.Cert, is.Chain, is.Key)
	ts.Check(err)
	m := bundle.NewManifest(args[1], mat, bundle.SourceImport, time.Now())
	if !o.unsigned {
		ts.Check(signer.Sign(m))
	}
	ts.Check(bundle.Write(filepath.Join(ts.MkAbs(args[0]), args[1], mat.ID()), mat, m))
	ts.Setenv("ID", mat.ID())
}

// perm MODE FILE fails unless FILE has the permission bits MODE (octal).
func perm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm MODE FILE")
	}
	want, err := strconv.ParseUint(args[0], 8, 32)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[1]))
	ts.Check(err)
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %s, want %s%s", args[1], fmtMode(got), map[bool]string{true: "not "}[neg], fmtMode(want))
	}
}

func fmtMode(m uint64) string { return fmt.Sprintf("%04o", m) }

// tree DIR prints every path under DIR with its type and permission
// bits, one per line in lexical order, so that a script can save what a
// directory held (cp stdout before.txt) and show that a failed run left
// it as it was (tree DIR; cmp stdout before.txt). A missing DIR prints
// nothing.
func tree(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: tree DIR")
	}
	root := ts.MkAbs(args[0])
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == root {
			return fs.SkipAll
		}
		if err != nil || path == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		line := fmt.Sprintf("%s %s", fi.Mode(), filepath.ToSlash(rel))
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			line += " -> " + target
		}
		_, err = fmt.Fprintln(ts.Stdout(), line)
		return err
	})
	ts.Check(err)
}
