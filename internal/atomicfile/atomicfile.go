// Package atomicfile writes files and symlinks so that a reader, or a
// crash, sees either the old content or the new, never a part of it.
//
// Every function writes a temporary entry in the destination's directory,
// sets its mode when it is created (before the first byte), syncs it,
// renames or links it into place and syncs the directory, so that the
// result survives a power loss. Temporary files are removed on error.
// The Root variants do the same inside an *os.Root, for directories that
// an untrusted account can write: nothing placed there (a symlink, say)
// redirects the write outside the root.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
)

// WriteFile replaces path with data. The temporary file is created with
// perm exactly (the umask does not apply), so a private file is never
// readable by others, not even while it is written.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// CreateNew creates path holding data, with perm exactly, unless path
// exists: then it is left alone and the error wraps fs.ErrExist. Path
// appears complete or not at all; when two processes race, one wins.
func CreateNew(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, filepath.Base(path), data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// ReplaceSymlink points the symlink path at target with one rename(2):
// readers follow the old target or the new one. The temporary link is
// .<name>.tmp beside path, so callers that may run at the same time for
// the same path must hold a lock.
func ReplaceSymlink(target, path string) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory so that the creations, renames and removals
// in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	return syncClose(d, err, dir)
}

// RootReplaceFile replaces name inside root atomically, with no sync:
// readers see the old content or the new, never part of either, but
// after a crash the file may hold the old content again. For files that
// are caches of a state kept durably elsewhere.
func RootReplaceFile(root *os.Root, name string, data []byte, perm fs.FileMode) error {
	dir := path.Dir(name)
	tmp := path.Join(dir, tempName(path.Base(name)))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := write(f, data, perm, false); err != nil {
		root.Remove(tmp)
		return err
	}
	if err := root.Rename(tmp, name); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// RootSyncDir is SyncDir for dir inside root.
func RootSyncDir(root *os.Root, dir string) error {
	d, err := root.Open(dir)
	return syncClose(d, err, dir)
}

// syncClose fsyncs and closes the directory d, which opening dir returned
// with err.
func syncClose(d *os.File, err error, dir string) error {
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// writeTemp writes data to a new temporary file in dir, named after base,
// and returns its path. Nothing is left behind on error.
func writeTemp(dir, base string, data []byte, perm fs.FileMode) (string, error) {
	tmp := filepath.Join(dir, tempName(base))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return "", err
	}
	if err := write(f, data, perm, true); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// write sets f's mode to perm exactly (open(2) applied the umask), writes
// data, syncs (when sync is set) and closes f.
func write(f *os.File, data []byte, perm fs.FileMode, sync bool) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// tempName is a hidden, unpredictable name for a temporary file of base.
func tempName(base string) string {
	var rnd [8]byte
	rand.Read(rnd[:])
	return "." + base + ".tmp-" + hex.EncodeToString(rnd[:])
}
