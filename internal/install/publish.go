package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/wire"
)

// publishStatus writes the installed manifest of name to
// <incoming>/<wire.StatusFile(name)> (or removes it when nothing is
// installed), through inc so that nothing the push account placed there
// redirects the write.
func (in *Installer) publishStatus(inc *os.Root, name string) error {
	cur, err := in.current(name)
	if err != nil {
		return err
	}
	fi, err := inc.Lstat(wire.StatusDir)
	if err == nil && !fi.IsDir() {
		if err := inc.Remove(wire.StatusDir); err != nil {
			return err
		}
		err = fs.ErrNotExist
	}
	if errors.Is(err, fs.ErrNotExist) {
		if err := inc.Mkdir(wire.StatusDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if fi, err = inc.Lstat(wire.StatusDir); err == nil && !fi.IsDir() {
			return fmt.Errorf("%s is a %s", wire.StatusDir, kind(fi))
		}
	}
	if err != nil {
		return err
	}
	path := wire.StatusFile(name)
	if cur == nil || cur.Raw == nil {
		if err := inc.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if old, err := inc.ReadFile(path); err == nil && bytes.Equal(old, cur.Raw) {
		return nil // already says so: no write, no sync
	}
	// A cache of the live link for the push account, rebuilt on every
	// run: a crash that loses it costs at most one push that certnode
	// answers with unchanged.
	return atomicfile.RootReplaceFile(inc, path, cur.Raw, 0o644)
}
