package install

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/certpush/certpush/internal/atomicfile"
)

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

func (in *Installer) liveDir() string { return filepath.Join(in.Config.Root, "live") }
