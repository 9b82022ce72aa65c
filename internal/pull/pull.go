package pull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"filippo.io/age"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/install"
	"github.com/certpush/certpush/internal/store"
	"github.com/certpush/certpush/internal/wire"
)

// ErrUnreachable says that the store could not be read; the node keeps
// what it has.
var ErrUnreachable = errors.New("store unreachable")

// ErrRefusedBefore says that current is the one a previous pull refused;
// its bundle was not downloaded again.
var ErrRefusedBefore = errors.New("refused before")

// Puller pulls certificates from a store and installs them with the same
// pipeline a push uses (install.Installer: verify, no downgrade, swap,
// config test, reload, TLS check, rollback).
type Puller struct {
	Store      store.Store
	Installer  *install.Installer
	Identities []age.Identity
	NodeID     string
	// Boot is for a pull at boot, before the service starts: the config
	// test runs, but no reload and no TLS check (nothing serves yet; the
	// service's start loads what was installed).
	Boot   bool
	Logger *slog.Logger
	Now    func() time.Time
}

// Result is one certificate's outcome. NotModified says that the store
// answered "not modified" to the one request made.
type Result struct {
	install.Result
	NotModified bool `json:"not_modified"`
}

func (p *Puller) log() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}

func (p *Puller) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// seen is what a node remembers of the last current it acted on.
// A refused current (tampered, downgraded, untrusted) is remembered by
// its ETag with the reason, so that the next polls ask for it
// conditionally and do not download its bundle again until current
// changes; they report it refused each time.
type seen struct {
	ETag         string `json:"etag"`
	ID           string `json:"id"`
	RefusedETag  string `json:"refused_etag,omitempty"`
	RefusedError string `json:"refused_error,omitempty"`
}

func (p *Puller) dir() string { return filepath.Join(p.Installer.Config.Root, ".pull") }

func (p *Puller) seenPath(name string) string { return filepath.Join(p.dir(), name+".json") }

func (p *Puller) readSeen(name string) seen {
	var s seen
	data, err := os.ReadFile(p.seenPath(name))
	if err == nil {
		_ = json.Unmarshal(data, &s)
	}
	return s
}

func (p *Puller) writeSeen(name string, s seen) {
	data, _ := json.Marshal(s)
	if err := atomicfile.WriteFile(p.seenPath(name), data, 0o600); err != nil {
		p.log().Warn("remember current", "cert", name, "error", err)
	}
}

// Pull pulls each of names (every configured certificate when empty).
// The error is only for what stops everything; each certificate's
// outcome is in its Result (an unreachable store: Failed, wrapping
// ErrUnreachable).
func (p *Puller) Pull(ctx context.Context, names []string) ([]Result, error) {
	cfg := p.Installer.Config
	if len(names) == 0 {
		names = cfg.Names()
	}
	if err := os.MkdirAll(p.dir(), 0o700); err != nil {
		return nil, err
	}
	st, err := p.Installer.Check(0)
	if err != nil {
		return nil, err
	}
	installed := map[string]install.Status{}
	for _, s := range st {
		if !s.Placeholder {
			installed[s.Cert] = s
		}
	}
	var out []Result
	for _, name := range names {
		cur := installed[name]
		r := p.pullOne(ctx, name, cur.ID)
		if r.Result.Result == install.Unchanged && r.ID == cur.ID {
			r.Fingerprint, r.NotAfter = cur.Fingerprint, cur.NotAfter
		}
		if r.Err != nil {
			r.Error = r.Err.Error()
		}
		if !r.NotModified {
			p.report(ctx, r)
		}
		out = append(out, r)
	}
	return out, nil
}

func (p *Puller) pullOne(ctx context.Context, name, installedID string) Result {
	r := Result{Result: install.Result{InstallResult: wire.InstallResult{Cert: name}}}
	fail := func(result string, err error) Result {
		r.Result.Result, r.Err = result, fmt.Errorf("%s: %w", name, err)
		return r
	}
	if _, ok := p.Installer.Config.Certs[name]; !ok {
		return fail(install.Refused, install.ErrNotConfigured)
	}
	last := p.readSeen(name)
	etag := ""
	if last.ID != "" && last.ID == installedID {
		etag = last.ETag
	}
	if last.RefusedETag != "" {
		etag = last.RefusedETag
	}
	o, err := p.Store.Get(ctx, store.CurrentKey(name), etag, store.MaxObject)
	switch {
	case errors.Is(err, store.ErrNotModified) && last.RefusedETag != "":
		r.ID, r.NotModified = installedID, true
		return fail(install.Refused, fmt.Errorf("%w (current unchanged since it was refused: %s)", ErrRefusedBefore, last.RefusedError))
	case errors.Is(err, store.ErrNotModified):
		r.Result.Result, r.ID, r.NotModified = install.Unchanged, installedID, true
		return r
	case errors.Is(err, fs.ErrNotExist):
		r.Result.Result = install.Nothing
		r.Err = fmt.Errorf("%s: nothing published in %s yet", name, p.Store)
		return r
	case err != nil:
		return fail(install.Failed, fmt.Errorf("%w: %s: %w", ErrUnreachable, p.Store, err))
	}
	refuse := func(err error) Result {
		r = fail(install.Refused, err)
		p.writeSeen(name, seen{ETag: last.ETag, ID: last.ID, RefusedETag: o.ETag, RefusedError: err.Error()})
		return r
	}
	ptr, err := store.ParsePointer(o.Data, name, p.Installer.Config.TrustedKeys)
	if err != nil {
		return refuse(err)
	}
	r.ID = ptr.ID
	if ptr.ID == installedID {
		p.writeSeen(name, seen{ETag: o.ETag, ID: ptr.ID})
		r.Result.Result = install.Unchanged
		return r
	}
	contents, err := p.download(ctx, name, ptr)
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			return fail(install.Failed, err)
		}
		return refuse(err)
	}
	defer clear(contents[bundle.KeyFile])
	in := *p.Installer
	c := *in.Config
	if p.Boot {
		c.Certs = map[string]*install.Cert{}
		for n, cc := range in.Config.Certs {
			cp := *cc
			cp.Reload, cp.Verify = nil, nil
			c.Certs[n] = &cp
		}
	}
	in.Config = &c
	results, err := in.Install(ctx, []string{name}, install.Options{ID: ptr.ID, Contents: contents})
	if err != nil {
		return fail(install.Failed, err)
	}
	r.Result = results[0]
	switch {
	case r.OK():
		p.writeSeen(name, seen{ETag: o.ETag, ID: ptr.ID})
	case r.Result.Result == install.Refused:
		msg := r.Error
		if r.Err != nil {
			msg = r.Err.Error()
		}
		p.writeSeen(name, seen{ETag: last.ETag, ID: last.ID, RefusedETag: o.ETag, RefusedError: msg})
	}
	return r
}

// download reads the bundle ptr names from the store, checks the manifest
// against the pointer and decrypts the key, and returns the bundle's
// files in memory (file name to bytes), as install.Options.Contents takes
// them: the clear key is never written anywhere but the node's archive,
// by the install, with the configured key mode.
func (p *Puller) download(ctx context.Context, name string, ptr *store.Pointer) (map[string][]byte, error) {
	get := func(file string, limit int64) ([]byte, error) {
		key := store.FileKey(name, ptr.ID, file)
		o, err := p.Store.Get(ctx, key, "", limit)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, store.ErrTooLarge) {
			return nil, fmt.Errorf("bundle %s: %w", ptr.ID, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, p.Store, err)
		}
		return o.Data, nil
	}
	contents := map[string][]byte{}
	for _, f := range store.PublicFiles {
		data, err := get(f, bundle.MaxFileSize)
		if err != nil {
			return nil, err
		}
		if f == bundle.ManifestFile {
			if store.SHA256(data) != ptr.ManifestSHA256 {
				return nil, fmt.Errorf("%w: manifest of %s does not match the current pointer", bundle.ErrHashMismatch, ptr.ID)
			}
			m, err := bundle.ParseManifest(data)
			if err != nil {
				return nil, err
			}
			if m.ID != ptr.ID || m.Name != name {
				return nil, fmt.Errorf("%w: manifest is for %s/%s, pointer for %s/%s", bundle.ErrManifestMismatch, m.Name, m.ID, name, ptr.ID)
			}
		}
		contents[f] = data
	}
	enc, err := get(ptr.Key, bundle.MaxFileSize+store.MaxObject)
	if err != nil {
		return nil, err
	}
	plain, err := store.Decrypt(enc, p.Identities, bundle.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", ptr.ID, err)
	}
	contents[bundle.KeyFile] = plain
	return contents, nil
}

// Report is a node's report object, <name>/nodes/<node-id>.
type Report struct {
	Node      string    `json:"node"`
	Cert      string    `json:"cert"`
	Installed string    `json:"installed"` // the id live now
	Result    string    `json:"result"`
	Error     string    `json:"error,omitempty"`
	Time      time.Time `json:"time"`
}

func (p *Puller) report(ctx context.Context, r Result) {
	if p.NodeID == "" || errors.Is(r.Err, ErrUnreachable) || errors.Is(r.Err, install.ErrNotConfigured) {
		return
	}
	rep := Report{Node: p.NodeID, Cert: r.Cert, Result: r.Result.Result, Error: r.Error, Time: p.now().UTC()}
	if st, err := p.Installer.Check(0); err == nil {
		for _, s := range st {
			if s.Cert == r.Cert {
				rep.Installed = s.ID
			}
		}
	}
	data, _ := json.Marshal(rep)
	if _, err := p.Store.Put(ctx, store.NodeKey(r.Cert, p.NodeID), data); err != nil {
		p.log().Warn("write node report", "cert", r.Cert, "error", err)
	}
}

// Reports lists the node reports of name.
func Reports(ctx context.Context, st store.Store, name string) ([]Report, error) {
	keys, err := st.List(ctx, store.NodesPrefix(name))
	if err != nil {
		return nil, err
	}
	var out []Report
	for _, k := range keys {
		o, err := st.Get(ctx, k, "", store.MaxObject)
		if err != nil {
			continue
		}
		var rep Report
		if json.Unmarshal(o.Data, &rep) == nil {
			out = append(out, rep)
		}
	}
	return out, nil
}
