package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
)

// installed is what live/<name> points at.
type installed struct {
	ID       string           // "" when the target is not a version directory
	Target   string           // the symlink's target, as read
	Dir      string           // the version directory
	Manifest *bundle.Manifest // nil when it cannot be read
	Raw      []byte           // manifest.json as stored
}

// current reads live/<name>; nil when there is none.
func (in *Installer) current(name string) (*installed, error) {
	link := filepath.Join(in.liveDir(), name)
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(pe.Err, syscall.EINVAL) {
			return nil, fmt.Errorf("%s is not a symlink: move it away so certnode can manage it", link)
		}
		return nil, fmt.Errorf("read live link: %w", err)
	}
	return in.installedAt(name, target), nil
}

// installedAt describes the version a live/<name> link with target points
// at.
func (in *Installer) installedAt(name, target string) *installed {
	cur := &installed{Target: target}
	if id := filepath.Base(target); validID(id) && target == filepath.Join("..", "archive", name, id) {
		cur.ID = id
	}
	cur.Dir = filepath.Join(in.liveDir(), target)
	if filepath.IsAbs(target) {
		cur.Dir = target
	}
	b, err := bundle.Open(cur.Dir)
	if err != nil {
		in.log().Warn("installed version unreadable", "cert", name, "target", target, "error", err)
		return cur
	}
	cur.Manifest = b.Manifest
	cur.Raw, _ = b.ReadFile(bundle.ManifestFile)
	if cur.ID == "" {
		cur.ID = b.Manifest.ID
	}
	return cur
}

func validID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// pickCandidate finds the bundle to install in <incoming>/<name>/: the one
// named id, or else the newest by the manifests' not_before, then
// not_after. It returns the chosen entry ("" for none) and every entry
// that is dealt with by this run and removed afterwards: with an id, that
// one; without, all of them (as paths relative to incoming) (older bundles are superseded, malformed ones
// useless). Entries starting with "." are uploads in progress and ignored.
func pickCandidate(inc *os.Root, name, id string) (string, []string, error) {
	fi, err := inc.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("incoming %s: %w", name, err)
	}
	if !fi.IsDir() {
		return "", []string{name}, fmt.Errorf("%w: incoming %s is a %s, not a directory", ErrBadIncoming, name, kind(fi))
	}
	if id != "" {
		fi, err := inc.Lstat(name + "/" + id)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, nil
		}
		if err != nil {
			return "", nil, fmt.Errorf("incoming %s/%s: %w", name, id, err)
		}
		if !fi.IsDir() {
			return "", []string{name + "/" + id}, fmt.Errorf("%w: incoming %s/%s is a %s, not a directory", ErrBadIncoming, name, id, kind(fi))
		}
		return id, []string{name + "/" + id}, nil
	}
	d, err := inc.Open(name)
	if err != nil {
		return "", nil, fmt.Errorf("incoming %s: %w", name, err)
	}
	entries, err := d.ReadDir(1000)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return "", nil, fmt.Errorf("incoming %s: %w", name, err)
	}
	type cand struct {
		id string
		m  *bundle.Manifest
	}
	var (
		good     []cand
		consumed []string
		firstErr error
	)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		consumed = append(consumed, name+"/"+n)
		m, err := readIncomingManifest(inc, name, n)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		good = append(good, cand{n, m})
	}
	if len(good) == 0 {
		return "", consumed, firstErr
	}
	sort.Slice(good, func(i, j int) bool {
		a, b := good[i].m, good[j].m
		if !a.NotBefore.Equal(b.NotBefore) {
			return a.NotBefore.After(b.NotBefore)
		}
		return a.NotAfter.After(b.NotAfter)
	})
	return good[0].id, consumed, nil
}

func readIncomingManifest(inc *os.Root, name, id string) (*bundle.Manifest, error) {
	fi, err := inc.Lstat(name + "/" + id)
	if err != nil {
		return nil, fmt.Errorf("incoming %s/%s: %w", name, id, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: incoming %s/%s is a %s, not a directory", ErrBadIncoming, name, id, kind(fi))
	}
	data, err := readIncoming(inc, name+"/"+id+"/"+bundle.ManifestFile)
	if err != nil {
		return nil, err
	}
	m, err := bundle.ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/%s: %v", ErrBadIncoming, name, id, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("%w: directory %s/%s holds bundle %s", ErrBadIncoming, name, id, m.ID)
	}
	return m, nil
}

func kind(fi fs.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t&fs.ModeSymlink != 0:
		return "symlink"
	case t.IsDir():
		return "directory"
	case t.IsRegular():
		return "regular file"
	}
	return "special file"
}

// readIncoming reads one regular file inside inc: no symlink, no special
// file, at most bundle.MaxFileSize bytes.
func readIncoming(inc *os.Root, path string) ([]byte, error) {
	fi, err := inc.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIncoming, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is a %s: bundle files must be regular files", ErrBadIncoming, path, kind(fi))
	}
	f, err := inc.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIncoming, err)
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is a %s: bundle files must be regular files", ErrBadIncoming, path, kind(fi))
	}
	if fi.Size() > bundle.MaxFileSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrBadIncoming, path, fi.Size(), bundle.MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, bundle.MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > bundle.MaxFileSize {
		return nil, fmt.Errorf("%w: %s is more than the %d bytes allowed", ErrBadIncoming, path, bundle.MaxFileSize)
	}
	return data, nil
}

// ids are the numeric owner and group for installed files; -1 leaves one
// as the running process's.
type ids struct{ uid, gid int }

func (in *Installer) owner(c *Cert) (ids, error) {
	out := ids{-1, -1}
	if c.Owner != "" {
		if n, err := strconv.Atoi(c.Owner); err == nil {
			out.uid = n
		} else {
			u, err := user.Lookup(c.Owner)
			if err != nil {
				return out, fmt.Errorf("owner of %s: %w", c.Name, err)
			}
			out.uid, _ = strconv.Atoi(u.Uid)
		}
	}
	if c.Group != "" {
		if n, err := strconv.Atoi(c.Group); err == nil {
			out.gid = n
		} else {
			g, err := user.LookupGroup(c.Group)
			if err != nil {
				return out, fmt.Errorf("group of %s: %w", c.Name, err)
			}
			out.gid, _ = strconv.Atoi(g.Gid)
		}
	}
	return out, nil
}

// stage copies <incoming>/<name>/<id> into a new private directory
// <root>/archive/<name>/.tmp-<id>-*: the key with key_mode, everything
// else with cert_mode, each set (and owned) before the first byte is
// written. Errors about what incoming holds wrap ErrBadIncoming.
func (in *Installer) stage(inc *os.Root, name, id string, c *Cert, own ids) (dir string, err error) {
	parent := in.archiveDir(name)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+id+"-")
	if err != nil {
		return "", fmt.Errorf("create temporary directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range append(append([]string{}, bundle.Files...), bundle.ManifestFile) {
		data, err := readIncoming(inc, name+"/"+id+"/"+f)
		if err != nil {
			return "", err
		}
		mode := c.CertMode
		if f == bundle.KeyFile {
			mode = c.KeyMode
		}
		if err := writeOwned(filepath.Join(tmp, f), data, mode, own); err != nil {
			return "", fmt.Errorf("write %s: %w", f, err)
		}
	}
	if err := atomicfile.SyncDir(tmp); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	return tmp, nil
}

// writeOwned creates path exclusively with mode, sets the owner and the
// exact mode (the umask cannot narrow it) before any byte is written,
// writes and syncs.
func writeOwned(path string, data []byte, mode os.FileMode, own ids) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	err = func() error {
		if own.uid != -1 || own.gid != -1 {
			if err := f.Chown(own.uid, own.gid); err != nil {
				return err
			}
		}
		if err := f.Chmod(mode); err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// place moves the verified temporary directory to archive/<name>/<id>. A
// version directory that exists already is never rewritten: when it
// verifies it is used as is (and tmp dropped); when it does not and it is
// not live, it is replaced. created reports whether tmp was moved.
func (in *Installer) place(tmp, name, id string, cur *installed) (created bool, err error) {
	parent := in.archiveDir(name)
	final := filepath.Join(parent, id)
	if _, err := os.Lstat(final); err == nil {
		problem := in.checkVersion(final, id)
		if problem == nil {
			return false, nil
		}
		if cur != nil && cur.ID == id {
			return false, fmt.Errorf("installed version %s is damaged (%v): remove %s and install again", id, problem, final)
		}
		in.log().Warn("replace damaged version directory", "cert", name, "id", id, "error", problem)
		if err := os.RemoveAll(final); err != nil {
			return false, err
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return false, fmt.Errorf("move version into place: %w", err)
	}
	return true, atomicfile.SyncDir(parent)
}

// checkVersion verifies an existing version directory's files against its
// manifest. Expiry and the signature were checked on the candidate that
// has the same id.
func (in *Installer) checkVersion(dir, id string) error {
	b, err := bundle.Open(dir)
	if err != nil {
		return err
	}
	if b.Manifest.ID != id {
		return fmt.Errorf("holds bundle %s", b.Manifest.ID)
	}
	_, err = b.Verify(nil, b.Manifest.NotBefore)
	return err
}

// swap points live/<name> at target with one rename(2).
func (in *Installer) swap(name, target string) error {
	return atomicfile.ReplaceSymlink(target, filepath.Join(in.liveDir(), name))
}

func (in *Installer) unlink(name string) error {
	if err := os.Remove(filepath.Join(in.liveDir(), name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(in.liveDir())
}

// prune keeps the Keep newest versions of name (by not_before), the
// current one always among them.
func (in *Installer) prune(name, currentID string) {
	dir := in.archiveDir(name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	type version struct {
		id string
		nb time.Time
	}
	var vs []version
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() || e.Name() == currentID {
			continue
		}
		b, err := bundle.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			in.log().Warn("archive entry unreadable; left alone", "cert", name, "id", e.Name(), "error", err)
			continue
		}
		vs = append(vs, version{e.Name(), b.Manifest.NotBefore})
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].nb.After(vs[j].nb) })
	for i, v := range vs {
		if i < in.Config.Keep-1 {
			continue
		}
		in.log().Debug("prune version", "cert", name, "id", v.id)
		if err := os.RemoveAll(filepath.Join(dir, v.id)); err != nil {
			in.log().Warn("prune version", "cert", name, "id", v.id, "error", err)
		}
	}
}

// StatusDir is the directory under incoming where the installed manifest
// of each certificate is published as <name>.json for the push account.
const StatusDir = ".status"

// publishStatus writes the installed manifest of name to
// <incoming>/.status/<name>.json (or removes it when nothing is
// installed), through inc so that nothing the push account placed there
// redirects the write.
func (in *Installer) publishStatus(inc *os.Root, name string) error {
	cur, err := in.current(name)
	if err != nil {
		return err
	}
	fi, err := inc.Lstat(StatusDir)
	if err == nil && !fi.IsDir() {
		if err := inc.Remove(StatusDir); err != nil {
			return err
		}
		err = fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := inc.Mkdir(StatusDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err = inc.Lstat(StatusDir); err == nil && !fi.IsDir() {
			return fmt.Errorf("%s is a %s", StatusDir, kind(fi))
		}
	}
	if err != nil {
		return err
	}
	path := StatusDir + "/" + name + ".json"
	if cur == nil || cur.Raw == nil {
		if err := inc.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return atomicfile.RootWriteFile(inc, path, cur.Raw, 0o644)
}

// lock takes the node's lock, waiting for another certnode as long as ctx
// allows. The returned function releases it.
func (in *Installer) lock(ctx context.Context) (func(), error) {
	path := in.Config.Lock
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	delay, logged := 10*time.Millisecond, false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !logged {
			in.log().Info("waiting for another certnode to finish", "lock", path)
			logged = true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}
