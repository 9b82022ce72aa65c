// Package push delivers bundles to hosts over SSH, one connection per host.
// A host that installs at once (install: now) gets one command, certnode
// install --stdin, with the bundle on its standard input: no upload, no
// second channel, nothing written by the push account. Any other host gets
// an SFTP upload into a temporary directory that is renamed into place,
// for the node's timer to install.
package push

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/certpush/certpush/internal/bounded"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/inventory"
	"github.com/certpush/certpush/internal/verify"
	"github.com/certpush/certpush/internal/wire"
)

// Outcomes of a host.
const (
	Installed = "installed"  // uploaded, installed by certnode, verified
	Uploaded  = "uploaded"   // uploaded; the node's timer installs it (install: cron)
	Unchanged = "unchanged"  // the host already has the bundle
	Planned   = "would_push" // dry run: the host would get the bundle
	Failed    = "failed"
	Skipped   = "skipped" // not started (rollout stopped)
)

// Options controls a push.
type Options struct {
	Auth           []ssh.AuthMethod
	KnownHosts     string
	Parallel       int           // hosts in flight at once
	Timeout        time.Duration // per host, the whole job
	ConnectTimeout time.Duration
	Install        bool   // run certnode install on the host after the upload
	SNI            string // server name for TLS verification
	Force          bool   // push and install even where the host has the bundle
	DryRun         bool   // read what hosts have, change nothing
	Logger         *slog.Logger
	// MaxFailures, when above zero, stops starting new hosts once more
	// than that many hosts have failed.
	MaxFailures int
	// Progress, when set, is called after each host finishes. Calls are
	// serialized.
	Progress func(done, total int, r Result)
	// ExecOnly says that only exec targets are pushed to: no SSH dialer
	// is made, known_hosts is not read, and an SSH host fails.
	ExecOnly bool
	// DialTCP, when set, opens the TCP connection to an SSH host in place
	// of a net.Dialer. It is a seam for tests and benchmarks (a fake
	// dialer that fails at once measures the plan without the kernel's
	// cost of real dials); certpush itself never sets it.
	DialTCP func(ctx context.Context, addr string) (net.Conn, error)
}

// Result is the outcome for one host.
type Result struct {
	Host      string        `json:"host"`
	Wave      string        `json:"wave,omitempty"` // canary or rest
	Address   string        `json:"address"`
	Result    string        `json:"result"`
	Duration  time.Duration `json:"-"`
	Previous  string        `json:"previous,omitempty"` // bundle id the host had
	BundleID  string        `json:"bundle_id"`
	Detail    string        `json:"detail,omitempty"`
	Err       error         `json:"-"`
	ErrorText string        `json:"error,omitempty"`
}

// OK reports whether the host ended where it should be.
func (r Result) OK() bool {
	return r.Result == Installed || r.Result == Uploaded || r.Result == Unchanged || r.Result == Planned
}

// Pusher pushes one bundle to many hosts.
type Pusher struct {
	opts   Options
	dialer *Dialer
	b      *bundle.Bundle
	files  map[string][]byte
	stream []byte // the bundle as certnode install --stdin reads it
}

// New prepares a push of b: it reads the bundle's files and the
// known_hosts file once.
func New(b *bundle.Bundle, opts Options) (*Pusher, error) {
	if opts.Parallel < 1 {
		opts.Parallel = 1
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var dialer *Dialer
	if !opts.ExecOnly {
		var err error
		if dialer, err = NewDialer(opts.Auth, opts.KnownHosts, opts.ConnectTimeout, opts.Logger); err != nil {
			return nil, err
		}
		dialer.dialTCP = opts.DialTCP
	}
	files := make(map[string][]byte, len(bundle.Files)+1)
	var frames []wire.File
	for _, name := range append([]string{bundle.ManifestFile}, bundle.Files...) {
		data, err := b.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		files[name] = data
		frames = append(frames, wire.File{Name: name, Data: data})
	}
	return &Pusher{opts: opts, dialer: dialer, b: b, files: files, stream: wire.EncodeStream(frames)}, nil
}

// Run pushes to hosts, at most Parallel at once, and returns one result per
// host in the order given. A cancelled ctx stops starting new hosts; hosts
// under way finish or time out, and the rest are reported as skipped.
func (p *Pusher) Run(ctx context.Context, hosts []inventory.Host) []Result {
	results := make([]Result, len(hosts))
	sem := make(chan struct{}, p.opts.Parallel)
	parent := ctx
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   int
		failed int
	)
	next := make(chan int)
	workers := 0
	one := func(i int) {
		defer func() { <-sem }()
		h := hosts[i]
		// Hosts under way are not cut short by ctx: they run to the
		// end or to their own deadline, so none is left half-done.
		// An exec target's command is the exception: it is
		// killed when the caller's context is cancelled.
		hctx := context.WithoutCancel(ctx)
		if h.IsExec() {
			hctx = parent
		}
		r := p.host(hctx, h)
		results[i] = r
		mu.Lock()
		defer mu.Unlock()
		done++
		if !r.OK() {
			failed++
			if p.opts.MaxFailures > 0 && failed > p.opts.MaxFailures {
				stop(fmt.Errorf("%w: %d hosts failed, more than %d", ErrTooManyFailures, failed, p.opts.MaxFailures))
			}
		}
		if p.opts.Progress != nil {
			p.opts.Progress(done, len(hosts), r)
		}
	}
	work := func() {
		for i := range next {
			one(i)
		}
	}
	for i := range hosts {
		if ctx.Err() == nil {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			why := "rollout interrupted"
			if cause := context.Cause(ctx); errors.Is(cause, ErrTooManyFailures) {
				why = cause.Error()
			}
			for j := i; j < len(hosts); j++ {
				results[j] = Result{Host: hosts[j].Name, Address: hosts[j].Location(), Result: Skipped, BundleID: p.b.Manifest.ID, Detail: why}
			}
			break
		}
		// A worker is started only when none is idle, and at most
		// Parallel of them; each takes host after host and keeps the
		// stack it grew (a goroutine per host grows a new one each
		// time, which over 100,000 hosts is a good part of the CPU).
		select {
		case next <- i:
		default:
			if workers < p.opts.Parallel {
				workers++
				wg.Go(work)
			}
			next <- i
		}
	}
	close(next)
	wg.Wait()
	return results
}

// ErrTooManyFailures stops a rollout when more hosts failed than allowed.
var ErrTooManyFailures = errors.New("rollout stopped")

func (p *Pusher) host(ctx context.Context, h inventory.Host) Result {
	start := time.Now()
	r := Result{Host: h.Name, Address: h.Location(), BundleID: p.b.Manifest.ID}
	ctx, cancel := context.WithTimeout(ctx, p.hostTimeout(h))
	defer cancel()
	var err error
	if h.IsExec() {
		err = p.deliverExec(ctx, h, &r)
	} else {
		err = p.deliver(ctx, h, &r)
	}
	r.Duration = time.Since(start)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (timeout %s)", err, p.hostTimeout(h))
		}
		r.Result = Failed
		r.Err = err
		r.ErrorText = err.Error()
		p.opts.Logger.Warn("push failed", "host", h.Name, "error", err)
	} else {
		p.opts.Logger.Debug("push done", "host", h.Name, "result", r.Result, "duration", r.Duration)
	}
	return r
}

func (p *Pusher) deliver(ctx context.Context, h inventory.Host, r *Result) error {
	if p.dialer == nil {
		return errors.New("SSH host in a push made for exec targets only")
	}
	if p.installs(h) {
		return p.deliverStream(ctx, h, r)
	}
	c, err := p.dialer.dialSFTP(ctx, h)
	if err != nil {
		return err
	}
	defer c.Close()
	sc := c.sftp

	m := p.b.Manifest
	dir := path.Join(h.Incoming, m.Name)
	r.Previous, err = installedID(sc, h.Incoming, m.Name)
	if err != nil {
		return ctxErr(ctx, err)
	}
	if r.Previous == m.ID && !p.opts.Force {
		r.Result = Unchanged
		return nil
	}
	if p.opts.DryRun {
		r.Result = Planned
		r.Detail = describeChange(r.Previous, m.ID)
		return nil
	}
	if _, err := p.upload(sc, dir, m.ID); err != nil {
		return ctxErr(ctx, fmt.Errorf("upload: %w", err))
	}
	r.Result = Uploaded
	r.Detail = "left for the node's timer"
	return nil
}

// deliverStream runs certnode install --stdin on h with the bundle on its
// standard input: one command does the unchanged check, the transfer and
// the install (or, in a dry run, the check and certnode's verification).
func (p *Pusher) deliverStream(ctx context.Context, h inventory.Host, r *Result) error {
	client, err := p.dialer.Dial(ctx, h)
	if err != nil {
		return err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()

	m := p.b.Manifest
	nr, err := p.install(client, h, m)
	if err != nil {
		return ctxErr(ctx, err)
	}
	r.Previous = nr.Previous
	switch nr.Result {
	case wire.Unchanged:
		r.Previous = m.ID
		r.Result = Unchanged
		if p.opts.Force {
			r.Detail = "certnode: unchanged"
		}
		return nil
	case wire.WouldInstall:
		r.Result = Planned
		r.Detail = describeChange(r.Previous, m.ID)
		return nil
	}
	r.Detail = "certnode: " + nr.Result
	for _, ep := range h.Verify {
		if err := verify.Expect(ctx, ep, p.opts.SNI, m.Fingerprint, verifyTimeout); err != nil {
			return fmt.Errorf("installed, but TLS check failed: %w", err)
		}
	}
	if len(h.Verify) > 0 {
		r.Detail = fmt.Sprintf("serves %s on %s", m.Fingerprint[:16], strings.Join(h.Verify, ", "))
	}
	r.Result = Installed
	return nil
}

// verifyTimeout bounds how long each verify endpoint may take to serve the
// new certificate steadily.
const verifyTimeout = 10 * time.Second

func describeChange(prev, next string) string {
	if prev == "" {
		return "none -> " + next
	}
	return prev + " -> " + next
}

// installedID reads the id of the bundle a host has installed, "" if none.
// The host's word is checked: an id that is not well-formed is an error.
func installedID(sc *sftp.Client, incoming, name string) (string, error) {
	f, err := sc.Open(path.Join(incoming, wire.StatusFile(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read installed manifest: %w", err)
	}
	// Nothing waits for the handle to be closed: the answer carries no
	// information, and the server closes it with the session anyway.
	defer func() { go f.Close() }()
	data, err := bounded.ReadAll(f, bundle.MaxFileSize)
	if err != nil {
		return "", fmt.Errorf("read installed manifest: %w", err)
	}
	m, err := bundle.ParseManifest(data)
	if err != nil {
		return "", fmt.Errorf("installed manifest: %w", err)
	}
	if !wire.ValidID(m.ID) {
		return "", fmt.Errorf("installed manifest: bad bundle id %q", m.ID)
	}
	return m.ID, nil
}

// upload writes the bundle into dir/.tmp-<random>/ and renames it to
// dir/<id>. The temporary directory is made private (0700) before any file
// is created in it, and the key is made 0600 before any byte of it is
// written, so no one but the push account and root ever can read it. On
// any error the temporary directory is removed.
//
// A dir/<id> that is there already is never replaced: it holds the same
// bundle (the id names its contents), another push may have put it there
// and its certnode may be reading it. created reports whether this upload
// is the one in place.
//
// Requests that do not depend on each other are in flight together: the
// files are written concurrently, each as open, (chmod), write, fstat
// (the size the host has), close. Nothing is checked that a request's
// answer already says: the directory is made without a stat before it,
// and the target is looked at only when the rename fails.
func (p *Pusher) upload(sc *sftp.Client, dir, id string) (created bool, err error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	// The certificate's directory is there after the first push; make it
	// only when it is missing.
	err = sc.Mkdir(tmp)
	if errors.Is(err, fs.ErrNotExist) {
		if err := sc.MkdirAll(dir); err != nil {
			return false, fmt.Errorf("create %s: %w", dir, err)
		}
		err = sc.Mkdir(tmp)
	}
	if err != nil {
		return false, fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil || !created {
			sc.RemoveAll(tmp)
		}
	}()
	if err := sc.Chmod(tmp, 0o700); err != nil {
		return false, err
	}
	names := slices.Concat(bundle.Files, []string{bundle.ManifestFile})
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			errs[i] = p.writeFile(sc, path.Join(tmp, name), name == bundle.KeyFile)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return false, err
	}
	if err := sc.Chmod(tmp, 0o755); err != nil {
		return false, err
	}
	final := path.Join(dir, id)
	if err := rename(sc, tmp, final); err != nil {
		// Already there (another push's, or one a refused install left):
		// use it as it is.
		if fi, serr := sc.Lstat(final); serr == nil && fi.IsDir() {
			p.opts.Logger.Debug("bundle already in incoming", "path", final)
			return false, nil
		}
		return false, fmt.Errorf("rename into place: %w", err)
	}
	return true, nil
}

func rename(sc *sftp.Client, from, to string) error {
	if _, ok := sc.HasExtension("posix-rename@openssh.com"); ok {
		return sc.PosixRename(from, to)
	}
	return sc.Rename(from, to)
}

// writeFile creates name (it must not exist), makes it 0600 first if it is
// secret, writes the bundle's file and checks that the host has exactly
// as many bytes as were sent.
func (p *Pusher) writeFile(sc *sftp.Client, name string, secret bool) error {
	f, err := sc.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if secret {
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return fmt.Errorf("chmod %s: %w", name, err)
		}
	}
	data := p.files[path.Base(name)]
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if fi.Size() != int64(len(data)) {
		f.Close()
		return fmt.Errorf("%s: %d bytes on the host, %d sent", path.Base(name), fi.Size(), len(data))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}

// ErrInstall is returned when certnode on the host did not install.
var ErrInstall = errors.New("certnode did not install")

// install runs certnode install --stdin for m on h, the bundle stream on
// its standard input, and returns certnode's result for the certificate
// when it installed, found it installed already, or (dry run) would
// install it; anything else is an error wrapping ErrInstall.
func (p *Pusher) install(client *ssh.Client, h inventory.Host, m *bundle.Manifest) (wire.InstallResult, error) {
	sess, err := client.NewSession()
	if err != nil {
		return wire.InstallResult{}, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdin = bytes.NewReader(p.stream)
	sess.Stdout = &stdout
	sess.Stderr = &tail{max: 2048, buf: &stderr}
	flags := ""
	if p.opts.Force {
		flags += " --force"
	}
	if p.opts.DryRun {
		flags += " --dry-run"
	}
	cmd := fmt.Sprintf("%s install --json --stdin%s --id %s %s", h.Command, flags, m.ID, m.Name)
	runErr := sess.Run(cmd)
	var out wire.InstallOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		var exit *ssh.ExitError
		msg := strings.TrimSpace(stderr.String())
		switch {
		case runErr != nil && !errors.As(runErr, &exit):
			// No exit status: the connection went before certnode
			// answered.
			lost := "the connection was lost before certnode answered"
			if msg != "" {
				lost += "; it said: " + msg
			}
			msg = lost
		case msg == "":
			msg = silentInstall(stdout.String(), h.Command)
		}
		if runErr != nil {
			return wire.InstallResult{}, fmt.Errorf("%w: %s: %v: %s", ErrInstall, cmd, runErr, msg)
		}
		return wire.InstallResult{}, fmt.Errorf("%w: unreadable output from %s: %s", ErrInstall, cmd, msg)
	}
	for _, nr := range out.Results {
		if nr.Cert != m.Name {
			continue
		}
		switch nr.Result {
		case wire.Installed, wire.Unchanged, wire.WouldInstall:
			if nr.Previous != "" && !wire.ValidID(nr.Previous) {
				return wire.InstallResult{}, fmt.Errorf("%w: certnode reported a bad previous id %q", ErrInstall, nr.Previous)
			}
			return nr, nil
		default:
			return wire.InstallResult{}, fmt.Errorf("%w: %s: %s", ErrInstall, nr.Result, nr.Error)
		}
	}
	return wire.InstallResult{}, fmt.Errorf("%w: no result for %s from %s", ErrInstall, m.Name, cmd)
}

// installs says whether certnode runs on h after the upload: the host's
// own install mode, else the pusher's.
func (p *Pusher) installs(h inventory.Host) bool {
	if h.Install != "" {
		return h.Install == inventory.InstallNow
	}
	return p.opts.Install
}

// silentInstall explains an install command that failed without a word
// on stderr: it printed something else than certnode's JSON (shown,
// shortened), or nothing at all.
func silentInstall(stdout, command string) string {
	out := strings.TrimSpace(stdout)
	if out == "" {
		return fmt.Sprintf("it printed nothing: the host may not let the push account run commands (ForceCommand internal-sftp, as for install: cron: set install: cron for this host), or %q is not certnode there (check the host's command:)", command)
	}
	if len(out) > 200 {
		out = out[:200] + "..."
	}
	if strings.Contains(out, "sftp connections only") {
		return fmt.Sprintf("it printed %q instead of certnode's JSON: the host lets the push account use SFTP only (ForceCommand internal-sftp, the chroot setup): set install: cron for this host", out)
	}
	return fmt.Sprintf("it printed %q instead of certnode's JSON: something else ran in its place, such as a nologin shell or a chatty ~/.bashrc for the push account, or another command= in its authorized_keys (give the account the forced command, with no start-up output), or %q is not certnode there (check the host's command:)", out, command)
}

// tail keeps the last max bytes written.
type tail struct {
	max int
	buf *bytes.Buffer
}

func (t *tail) Write(b []byte) (int, error) {
	t.buf.Write(b)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(b), nil
}
