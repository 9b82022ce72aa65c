package install

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/bundle"
	"github.com/certpush/certpush/internal/wire"
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
	if id := filepath.Base(target); wire.ValidID(id) && target == filepath.Join("..", "archive", name, id) {
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
// written. Every file is read and checked before anything is written.
// Errors about what incoming holds wrap ErrBadIncoming.
func (in *Installer) stage(inc *os.Root, name, id string, c *Cert, own ids) (dir string, err error) {
	contents := map[string][]byte{}
	for _, f := range append(append([]string{}, bundle.Files...), bundle.ManifestFile) {
		if contents[f], err = readIncoming(inc, name+"/"+id+"/"+f); err != nil {
			return "", err
		}
	}
	return in.writeVersion(name, id, contents, c, own)
}

// writeVersion writes contents (file name to bytes) into a new private
// directory <root>/archive/<name>/.tmp-<id>-*: the key with key_mode,
// everything else with cert_mode, each set (and owned) before the first
// byte is written; then syncs it and opens it to readers (0755).
func (in *Installer) writeVersion(name, id string, contents map[string][]byte, c *Cert, own ids) (dir string, err error) {
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
	for _, f := range slices.Sorted(maps.Keys(contents)) {
		data := contents[f]
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

func (in *Installer) archiveDir(name string) string {
	return filepath.Join(in.Config.Root, "archive", name)
}
