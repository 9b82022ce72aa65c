package install

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/certpush/certpush/internal/bounded"
	"github.com/certpush/certpush/internal/bundle"
)

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

// readIncoming reads one regular file inside inc: no symlink, no special
// file, no file with more than one link (a hard link to a file the push
// account could not read itself), at most bundle.MaxFileSize bytes.
// Errors never quote what the file holds.
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
	ofi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIncoming, err)
	}
	if st, ok := ofi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return nil, fmt.Errorf("%w: %s has %d hard links: bundle files must be uploaded, not linked", ErrBadIncoming, path, st.Nlink)
	}
	data, err := bounded.ReadRegular(f, path, bundle.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadIncoming, err)
	}
	return data, nil
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

// StaleUpload is the age after which an upload directory
// (<incoming>/<name>/.tmp-*) that was never renamed into place counts as
// abandoned, left by a push whose connection broke, and is removed.
const StaleUpload = 10 * time.Minute

// StaleBundle is the age after which a complete upload
// (<incoming>/<name>/<id>) that no run installed or refused is removed, so
// that no copy of a private key stays in incoming longer: one left by a
// push whose install was refused before certnode looked at it, one kept
// after a failure of this host for a later run to retry, or one another
// run's --id passed over. A push after that uploads it again.
const StaleBundle = time.Hour

// cleanUploads removes abandoned upload directories of name from incoming
// and complete uploads older than StaleBundle. Younger ones may belong to
// a push under way and are left alone.
func (in *Installer) cleanUploads(inc *os.Root, name string) {
	d, err := inc.Open(name)
	if err != nil {
		return
	}
	entries, _ := d.ReadDir(1000)
	d.Close()
	for _, e := range entries {
		n := e.Name()
		limit, what := StaleBundle, "remove uninstalled upload"
		switch {
		case strings.HasPrefix(n, ".tmp-"):
			limit, what = StaleUpload, "remove abandoned upload"
		case strings.HasPrefix(n, "."):
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		age := in.now().Sub(fi.ModTime())
		if age < limit {
			continue
		}
		p := name + "/" + n
		in.log().Info(what, "cert", name, "path", p, "age", age.Round(time.Second))
		if err := inc.RemoveAll(p); err != nil {
			in.log().Warn(what, "cert", name, "path", p, "error", err)
		}
	}
}
