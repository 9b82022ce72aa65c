// Package install is the node side of certpush: it takes bundles that the
// push account left in the incoming directory, verifies them, installs
// them as immutable version directories under <root>/archive, switches the
// <root>/live/<name> symlink, runs the service's config test and reload,
// checks over TLS that the new certificate is served, and rolls back on
// any failure.
//
// Everything under the incoming directory is untrusted: it is read through
// an os.Root, symlinks and special files are refused, sizes are bounded,
// and nothing is installed before its hashes, signature, key and chain
// have been verified on a private copy.
package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
)

// Results of installing one certificate: the wire contract's values.
const (
	Installed    = wire.Installed
	Unchanged    = wire.Unchanged
	Nothing      = wire.Nothing
	WouldInstall = wire.WouldInstall
	Refused      = wire.Refused
	RolledBack   = wire.RolledBack
	Failed       = wire.Failed
)

// Errors carried by Result.Err, checked with errors.Is.
var (
	ErrNotConfigured = errors.New("certificate is not configured on this node")
	ErrNameMismatch  = errors.New("bundle is for another certificate")
	ErrDowngrade     = errors.New("bundle is older than the installed certificate")
	ErrTestFailed    = errors.New("config test failed")
	ErrReloadFailed  = errors.New("reload failed")
	ErrVerifyFailed  = errors.New("endpoint does not serve the new certificate")
	ErrRollback      = errors.New("rollback did not complete")
	ErrBadIncoming   = errors.New("malformed bundle in incoming")
)

// Result is the outcome for one certificate: the wire contract's
// InstallResult (what `certnode install --json` prints), plus the error
// behind its Error text.
type Result struct {
	wire.InstallResult
	Err error `json:"-"`
}

// OK reports whether the result counts as success (exit status 0).
func (r Result) OK() bool { return wire.Succeeded(r.Result) }

// Options change how Install picks and accepts a bundle.
type Options struct {
	// Force installs even when the candidate is already installed or older
	// than the installed certificate.
	Force bool
	// ID picks <incoming>/<name>/<ID> instead of the newest bundle. It
	// needs exactly one name.
	ID string
	// Contents, when set, is the bundle ID itself (file name to bytes, as
	// a bundle stream brings it) instead of one from incoming. It is
	// verified in memory before anything is written.
	Contents map[string][]byte
	// DryRun, with Contents, verifies and decides as an install would
	// and stops there: the result is WouldInstall, Unchanged or Refused.
	DryRun bool
}

// Installer installs certificates as its Config says. Logger and Now may
// be nil (no logs; time.Now).
type Installer struct {
	Config *Config
	Logger *slog.Logger
	Now    func() time.Time
}

func (in *Installer) log() *slog.Logger {
	if in.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Logger
}

func (in *Installer) now() time.Time {
	if in.Now == nil {
		return time.Now()
	}
	return in.Now()
}

// Install installs the newest bundle waiting for each of names (all
// configured certificates when names is empty), one after the other, under
// the node's lock; it waits for the lock as long as ctx allows. Each
// certificate gets a Result; the error is only for problems that stop
// everything (the lock, the directories, bad options).
func (in *Installer) Install(ctx context.Context, names []string, opts Options) ([]Result, error) {
	if opts.ID != "" {
		if len(names) != 1 {
			return nil, errors.New("installing a bundle by id needs exactly one certificate name")
		}
		if !wire.ValidID(opts.ID) {
			return nil, fmt.Errorf("bundle id %q is not 16 lowercase hex digits", opts.ID)
		}
	}
	if (opts.Contents != nil || opts.DryRun) && opts.ID == "" {
		return nil, errors.New("installing a bundle from a stream, or a dry run, needs its id")
	}
	if opts.DryRun && opts.Contents == nil {
		return nil, errors.New("a dry run needs the bundle's contents")
	}
	if len(names) == 0 {
		names = in.Config.Names()
	}
	names = dedupe(names)
	if opts.DryRun {
		// Reads only: no lock (which writes its file), no clean-up, no
		// recovery of an interrupted install, no status.
		return in.dryRun(ctx, names[0], opts), nil
	}
	if err := in.prepare(); err != nil {
		return nil, err
	}
	unlock, err := in.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	in.cleanStray()

	inc, err := openIncoming(in.Config.Incoming)
	if errors.Is(err, fs.ErrNotExist) {
		in.log().Info("no incoming directory yet", "path", in.Config.Incoming)
		inc = nil
	} else if errors.Is(err, ErrUnsafeIncoming) {
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("open incoming: %w", err)
	} else {
		defer inc.Close()
	}

	results := make([]Result, 0, len(names))
	for _, name := range names {
		r := in.installOne(ctx, inc, name, opts)
		if r.Err != nil {
			r.Error = r.Err.Error()
		}
		l := in.log().With("cert", r.Cert, "result", r.Result, "id", r.ID)
		switch {
		case r.Err != nil:
			l.Warn("install", "error", r.Error)
		case r.Result == Installed:
			l.Info("install", "previous", r.Previous, "fingerprint", r.Fingerprint, "not_after", r.NotAfter)
		default:
			l.Debug("install")
		}
		results = append(results, r)
	}
	return results, nil
}

// dryRun decides for opts.Contents as an install of name would, without
// writing anything.
func (in *Installer) dryRun(ctx context.Context, name string, opts Options) []Result {
	a := in.newAttempt(ctx, nil, name)
	if a.begin() {
		a.runContents(opts)
	}
	if a.res.Err != nil {
		a.res.Error = a.res.Err.Error()
	}
	return []Result{a.res}
}

func dedupe(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// prepare creates root, archive and live when missing.
func (in *Installer) prepare() error {
	for _, d := range []string{in.Config.Root, filepath.Join(in.Config.Root, "archive"), in.liveDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// cleanStray removes what an interrupted run left: temporary version
// directories in archive and temporary symlinks in live.
func (in *Installer) cleanStray() {
	archive := filepath.Join(in.Config.Root, "archive")
	dirs, _ := os.ReadDir(archive)
	for _, d := range dirs {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		entries, _ := os.ReadDir(filepath.Join(archive, d.Name()))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp") {
				p := filepath.Join(archive, d.Name(), e.Name())
				in.log().Info("remove leftover temporary directory", "path", p)
				os.RemoveAll(p)
			}
		}
	}
	entries, _ := os.ReadDir(in.liveDir())
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".tmp") || isPendingTemp(n) {
			p := filepath.Join(in.liveDir(), n)
			in.log().Info("remove leftover temporary link", "path", p)
			os.Remove(p)
		}
	}
}

// attempt carries the state of one certificate's install.
type attempt struct {
	in   *Installer
	ctx  context.Context
	cert *Cert
	inc  *os.Root
	res  Result
	cur  *installed
	// consumed lists incoming entries (<name>/<id>) to remove afterwards.
	consumed     []string
	keepIncoming bool
	// recovered is the id an interrupted install of which this run
	// finished, recoveredFrom the id that was live before it.
	recovered, recoveredFrom string
}

func (in *Installer) newAttempt(ctx context.Context, inc *os.Root, name string) *attempt {
	return &attempt{in: in, ctx: ctx, inc: inc, res: Result{InstallResult: wire.InstallResult{Cert: name}}}
}

// begin checks the certificate's name and config and reads what is
// installed. It returns false when that failed, with the result set.
func (a *attempt) begin() bool {
	in, name := a.in, a.res.Cert
	if err := bundle.ValidName(name); err != nil {
		a.fail(Refused, err)
		return false
	}
	c, ok := in.Config.Certs[name]
	if !ok {
		a.fail(Refused, fmt.Errorf("%w: %q is not under certs in %s", ErrNotConfigured, name, in.Config.Path))
		return false
	}
	a.cert = c
	cur, err := in.current(name)
	if err != nil {
		a.fail(Failed, err)
		return false
	}
	a.cur = cur
	if cur != nil {
		a.res.Previous = cur.ID
	}
	return true
}

func (in *Installer) installOne(ctx context.Context, inc *os.Root, name string, opts Options) Result {
	a := in.newAttempt(ctx, inc, name)
	if !a.begin() {
		return a.res
	}
	p, err := in.readPending(name)
	if err != nil {
		return a.fail(Failed, err)
	}
	if p != nil {
		id, err := a.recover(p)
		if err != nil {
			return a.fail(Failed, err)
		}
		if a.cur, err = in.current(name); err != nil {
			return a.fail(Failed, err)
		}
		a.res.Previous = ""
		if a.cur != nil {
			a.res.Previous = a.cur.ID
		}
		if id != "" {
			a.recovered, a.recoveredFrom = id, p.PreviousID
		}
	}
	a.run(opts)
	a.finish()
	return a.res
}

func (a *attempt) fail(result string, err error) Result {
	a.res.Result = result
	a.res.Err = err
	return a.res
}

// finish removes the consumed incoming bundles (unless the failure was
// this host's own, so that a later run can retry) and publishes the
// installed manifest for the push account.
func (a *attempt) finish() {
	if a.inc == nil {
		return
	}
	if !a.keepIncoming {
		for _, p := range a.consumed {
			if err := a.inc.RemoveAll(p); err != nil {
				a.in.log().Warn("remove incoming bundle", "cert", a.cert.Name, "path", p, "error", err)
			}
		}
	}
	a.in.cleanUploads(a.inc, a.cert.Name)
	if err := a.in.publishStatus(a.inc, a.cert.Name); err != nil {
		a.in.log().Warn("write status", "cert", a.cert.Name, "error", err)
	}
}

// run installs the bundle that opts pick from incoming: choose it, copy
// it into a private directory, verify and accept the copy, move it into
// the archive and activate it.
func (a *attempt) run(opts Options) {
	if opts.Contents != nil {
		a.runContents(opts)
		return
	}
	cand := a.pick(opts)
	if cand == "" {
		return
	}
	a.res.ID = cand

	// Copy into a private temporary directory and verify the copy, so
	// what is checked is what gets installed.
	tmp, ok := a.stageCopy(cand)
	if !ok {
		return
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	b, err := bundle.Open(tmp)
	if err != nil {
		a.fail(Refused, fmt.Errorf("%w: %v", ErrBadIncoming, err))
		return
	}
	m, ok := a.accept(b, cand, opts)
	if !ok {
		return
	}

	created, err := a.in.place(tmp, a.cert.Name, cand, a.cur)
	if err != nil {
		a.keepIncoming = true
		a.fail(Failed, err)
		return
	}
	a.activate(m, created)
}

// runContents installs the bundle opts.Contents: verify and accept it in
// memory, then write it into the archive and activate it. Nothing is
// written for a bundle that is refused.
func (a *attempt) runContents(opts Options) {
	cand := opts.ID
	a.res.ID = cand
	b, err := bundle.FromContents(opts.Contents)
	if err != nil {
		a.fail(Refused, err)
		return
	}
	m, ok := a.accept(b, cand, opts)
	if !ok {
		return
	}
	if opts.DryRun {
		a.res.Result = WouldInstall
		return
	}
	ids, err := a.in.owner(a.cert)
	if err != nil {
		a.fail(Failed, err)
		return
	}
	tmp, err := a.in.writeVersion(a.cert.Name, cand, opts.Contents, a.cert, ids)
	if err != nil {
		a.fail(Failed, err)
		return
	}
	defer os.RemoveAll(tmp) // a no-op once renamed into place
	created, err := a.in.place(tmp, a.cert.Name, cand, a.cur)
	if err != nil {
		a.fail(Failed, err)
		return
	}
	a.activate(m, created)
}

// pick chooses the incoming bundle to install and records what this run
// consumes. It returns "" when there is none, with the result set.
func (a *attempt) pick(opts Options) string {
	in, name := a.in, a.cert.Name
	if a.inc == nil {
		a.res.Result = Nothing
		if opts.ID != "" {
			a.res.Err = fmt.Errorf("no bundle %s in %s", opts.ID, in.Config.Incoming)
		}
		return ""
	}
	cand, consumed, err := pickCandidate(a.inc, name, opts.ID)
	a.consumed = consumed
	if err != nil {
		a.fail(Refused, err)
		return ""
	}
	if cand == "" {
		a.res.Result = Nothing
		if opts.ID != "" {
			if a.cur != nil && a.cur.ID == opts.ID && !opts.Force {
				// Another run installed it already.
				a.setFromCurrent()
				a.res.Result = Unchanged
				a.reportRecovered()
				return ""
			}
			a.res.Err = fmt.Errorf("no bundle %s in %s", opts.ID, filepath.Join(in.Config.Incoming, name))
		}
		return ""
	}
	return cand
}

// stageCopy copies the incoming bundle cand into a private temporary
// directory, owned and with modes as configured. ok is false when it
// failed, with the result set.
func (a *attempt) stageCopy(cand string) (tmp string, ok bool) {
	in, c := a.in, a.cert
	ids, err := in.owner(c)
	if err != nil {
		a.keepIncoming = true
		a.fail(Failed, err)
		return "", false
	}
	tmp, err = in.stage(a.inc, c.Name, cand, c, ids)
	if err != nil {
		if _, lerr := a.inc.Lstat(c.Name + "/" + cand); errors.Is(lerr, fs.ErrNotExist) {
			// Removed while it was read (by the push that uploaded it,
			// giving up): nothing to install, and nothing malformed.
			a.res.Result = Nothing
			a.res.Err = fmt.Errorf("bundle %s was removed from %s while it was read", cand, filepath.Join(in.Config.Incoming, c.Name))
			return "", false
		}
		if errors.Is(err, ErrBadIncoming) {
			a.fail(Refused, err)
		} else {
			a.keepIncoming = true
			a.fail(Failed, err)
		}
		return "", false
	}
	return tmp, true
}

// accept verifies b, the staged copy of bundle cand (or the bundle from
// a stream), and decides whether it is to be installed: it must verify, be for this certificate and its
// domains, and (unless forced) be neither what is installed nor older.
// ok is false when it is not, with the result set.
func (a *attempt) accept(b *bundle.Bundle, cand string, opts Options) (m *bundle.Manifest, ok bool) {
	in, c, name := a.in, a.cert, a.cert.Name
	m = b.Manifest
	a.res.Fingerprint, a.res.NotAfter = m.Fingerprint, m.NotAfter
	mat, err := b.Verify(in.Config.TrustedKeys, in.now())
	if err != nil {
		a.fail(Refused, fmt.Errorf("bundle %s: %w", cand, err))
		return nil, false
	}
	if m.Source == bundle.SourcePlaceholder {
		a.fail(Refused, fmt.Errorf("%w: bundle %s claims to be a bootstrap placeholder, which only certnode bootstrap makes, on the node", ErrBadIncoming, cand))
		return nil, false
	}
	if m.Name != name {
		a.fail(Refused, fmt.Errorf("%w: bundle %s is for %q, not %q", ErrNameMismatch, cand, m.Name, name))
		return nil, false
	}
	if err := c.Anchor.Check(mat.Leaf, mat.Chain, in.now()); err != nil {
		a.fail(Refused, fmt.Errorf("bundle %s: %w", cand, err))
		return nil, false
	}
	if m.ID != cand {
		a.fail(Refused, fmt.Errorf("%w: directory %s holds bundle %s", ErrBadIncoming, cand, m.ID))
		return nil, false
	}
	if missing := bundle.Uncovered(mat.Leaf, c.Domains); len(missing) > 0 {
		a.fail(Refused, fmt.Errorf("bundle %s: %w: %s (certificate has %s)", cand, bundle.ErrNames,
			strings.Join(missing, ", "), strings.Join(bundle.Domains(mat.Leaf), ", ")))
		return nil, false
	}
	if a.cur != nil && a.cur.ID == cand && !opts.Force {
		a.res.Result = Unchanged
		a.reportRecovered()
		return nil, false
	}
	// Any real certificate replaces bootstrap's placeholder, however old.
	if a.cur != nil && a.cur.Manifest != nil && a.cur.Manifest.Source != bundle.SourcePlaceholder &&
		m.NotBefore.Before(a.cur.Manifest.NotBefore) && !opts.Force {
		a.fail(Refused, fmt.Errorf("%w: bundle %s was issued %s, the installed %s %s; install it with force to go back",
			ErrDowngrade, cand, m.NotBefore.UTC().Format(time.RFC3339), a.cur.ID, a.cur.Manifest.NotBefore.UTC().Format(time.RFC3339)))
		return nil, false
	}
	return m, true
}

// reportRecovered reports an install that this run finished for an
// interrupted one as installed.
func (a *attempt) reportRecovered() {
	if a.recovered != "" && a.cur != nil && a.cur.ID == a.recovered {
		a.res.Result = Installed
		a.res.Previous = a.recoveredFrom
	}
}

func (a *attempt) setFromCurrent() {
	a.res.ID = a.cur.ID
	if m := a.cur.Manifest; m != nil {
		a.res.Fingerprint, a.res.NotAfter = m.Fingerprint, m.NotAfter
	}
}
