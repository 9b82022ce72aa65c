package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/certpush/certpush/internal/atomicfile"
	"github.com/certpush/certpush/internal/flock"
)

// Dir is a store in a local or shared directory. Objects are files (mode
// 0600, written to a temporary file and renamed or linked into place);
// an object's ETag is the SHA-256 of its contents. Create links the
// temporary file to the key's path, which fails when a file is there;
// Replace compares and renames under an exclusive lock (flock on
// <dir>/.lock), so every process sharing the directory gets S3's
// conditional semantics.
type Dir struct{ root string }

var _ Store = (*Dir)(nil)

// OpenDir opens the directory store at dir, creating it (0700) when
// missing.
func OpenDir(dir string) (*Dir, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("store file://%s: not an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Dir{root: filepath.Clean(dir)}, nil
}

func (d *Dir) String() string { return "file://" + d.root }

func (d *Dir) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(key)), nil
}

func etagOf(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func (d *Dir) lock(ctx context.Context) (func(), error) {
	l, err := flock.Acquire(ctx, filepath.Join(d.root, ".lock"), 0o700, nil)
	if err != nil {
		return nil, fmt.Errorf("store lock: %w", err)
	}
	return l.Release, nil
}

// Get implements Store.
func (d *Dir) Get(ctx context.Context, key, ifNoneMatch string, limit int64) (*Object, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDONLY|noFollow, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notExist(key)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("object %s: not a regular file", key)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("object %s: %w (%d bytes, limit %d)", key, ErrTooLarge, fi.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("object %s: %w", key, ErrTooLarge)
	}
	tag := etagOf(data)
	if ifNoneMatch != "" && unquote(ifNoneMatch) == tag {
		return nil, ErrNotModified
	}
	return &Object{Data: data, ETag: tag}, nil
}

// temp writes data to a new temporary file beside p, 0600 from creation.
func temp(p string, data []byte) (string, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", err
	}
	var b [8]byte
	rand.Read(b[:])
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+"."+hex.EncodeToString(b[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// stage writes data to a temporary file beside key's path and takes the
// store's lock: what Create and Replace do before they look.
func (d *Dir) stage(ctx context.Context, key string, data []byte) (p, tmp string, unlock func(), err error) {
	if p, err = d.path(key); err != nil {
		return "", "", nil, err
	}
	if tmp, err = temp(p, data); err != nil {
		return "", "", nil, fmt.Errorf("object %s: %w", key, err)
	}
	if unlock, err = d.lock(ctx); err != nil {
		os.Remove(tmp)
		return "", "", nil, err
	}
	return p, tmp, unlock, nil
}

// Create implements Store.
func (d *Dir) Create(ctx context.Context, key string, data []byte) (string, error) {
	p, tmp, unlock, err := d.stage(ctx, key, data)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	defer unlock()
	if err := os.Link(tmp, p); errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("object %s: %w: it exists", key, ErrPrecondition)
	} else if err != nil {
		return "", fmt.Errorf("object %s: %w", key, err)
	}
	return etagOf(data), atomicfile.SyncDir(filepath.Dir(p))
}

// Replace implements Store.
func (d *Dir) Replace(ctx context.Context, key string, data []byte, etag string) (string, error) {
	p, tmp, unlock, err := d.stage(ctx, key, data)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	defer unlock()
	cur, err := d.Get(ctx, key, "", 1<<30)
	if err != nil {
		return "", err
	}
	if cur.ETag != unquote(etag) {
		return "", fmt.Errorf("object %s: %w: it changed", key, ErrPrecondition)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("object %s: %w", key, err)
	}
	return etagOf(data), atomicfile.SyncDir(filepath.Dir(p))
}

// Put implements Store.
func (d *Dir) Put(ctx context.Context, key string, data []byte) (string, error) {
	p, err := d.path(key)
	if err != nil {
		return "", err
	}
	tmp, err := temp(p, data)
	if err != nil {
		return "", fmt.Errorf("object %s: %w", key, err)
	}
	defer os.Remove(tmp)
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("object %s: %w", key, err)
	}
	return etagOf(data), atomicfile.SyncDir(filepath.Dir(p))
}

// List implements Store.
func (d *Dir) List(ctx context.Context, prefix string) ([]string, error) {
	base := filepath.Join(d.root, filepath.FromSlash(strings.TrimSuffix(prefix, "/")))
	var keys []string
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == base {
				return filepath.SkipDir
			}
			return err
		}
		if strings.HasPrefix(e.Name(), ".") && p != base {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type().IsRegular() {
			rel, _ := filepath.Rel(d.root, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	return keys, nil
}
