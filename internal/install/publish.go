package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/certpush/certpush/internal/atomicfile"
)

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
