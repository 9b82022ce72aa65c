package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnsafeIncoming says that the incoming directory could be redirected by
// someone other than root (or the user certnode runs as): it is a symlink,
// or a directory above it can be written by another user. certnode then
// neither reads nor writes anything in it.
var ErrUnsafeIncoming = errors.New("unsafe incoming directory")

// unsafeFix is what an operator does about an unsafe incoming directory.
const unsafeFix = "make every parent of incoming root-owned and not group/world-writable"

// maxLinks bounds the symlinks followed in the parents of incoming.
const maxLinks = 40

// openIncoming opens the incoming directory at path as an os.Root, after
// checking that no one but root and the running user can make path lead
// elsewhere, in the way OpenSSH's StrictModes checks the files it reads:
//
//   - path itself must be a directory, not a symlink;
//   - every directory above it, up to /, must be owned by root or the
//     running user and not group/world-writable, except a sticky
//     directory (like /tmp) whose entry on the way to incoming is owned
//     by root or the running user, so no one else can rename or remove it;
//   - a symlink above it is followed, and its target's parents are held
//     to the same rule.
//
// The root that is opened is checked to be the very directory that was
// examined. A missing incoming directory (or parent) is fs.ErrNotExist;
// an unsafe one wraps ErrUnsafeIncoming, naming the path, its owner and
// what to do.
func openIncoming(path string) (*os.Root, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("incoming %s: not an absolute path", path)
	}
	path = filepath.Clean(path)
	c := &pathCheck{incoming: path, uid: os.Geteuid()}
	parent, err := c.resolveDir(filepath.Dir(path), 0)
	if err != nil {
		return nil, err
	}
	pfi, err := os.Lstat(parent)
	if err != nil {
		return nil, err
	}
	full := filepath.Join(parent, filepath.Base(path))
	fi, err := os.Lstat(full)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%w: incoming %s is a symlink: make it a real directory, owned by the push account, in a root-owned parent", ErrUnsafeIncoming, path)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: incoming %s is a %s, not a directory", ErrUnsafeIncoming, path, kind(fi))
	}
	if err := c.entry(parent, pfi, full, fi); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(full)
	if err != nil {
		return nil, err
	}
	opened, err := root.Stat(".")
	if err != nil || !os.SameFile(opened, fi) {
		root.Close()
		return nil, fmt.Errorf("%w: incoming %s changed while it was opened: %s", ErrUnsafeIncoming, path, unsafeFix)
	}
	return root, nil
}

// pathCheck checks the directories above one incoming path.
type pathCheck struct {
	incoming string // as configured, for messages
	uid      int    // the running user
}

// resolveDir checks every directory from / down to dir, following
// symlinks (each checked where it sits, its target then checked from /),
// and returns dir with the symlinks resolved.
func (c *pathCheck) resolveDir(dir string, links int) (string, error) {
	cur := "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return "", err
	}
	if err := c.dir(cur, fi); err != nil {
		return "", err
	}
	for _, comp := range strings.Split(strings.TrimPrefix(dir, "/"), "/") {
		if comp == "" {
			continue
		}
		next := filepath.Join(cur, comp)
		nfi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if err := c.entry(cur, fi, next, nfi); err != nil {
			return "", err
		}
		if nfi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxLinks {
				return "", fmt.Errorf("incoming %s: too many symlinks above it", c.incoming)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			if cur, err = c.resolveDir(filepath.Clean(target), links); err != nil {
				return "", err
			}
			if fi, err = os.Lstat(cur); err != nil {
				return "", err
			}
			continue
		}
		if !nfi.IsDir() {
			return "", fmt.Errorf("incoming %s: %s is a %s, not a directory", c.incoming, next, kind(nfi))
		}
		if err := c.dir(next, nfi); err != nil {
			return "", err
		}
		cur, fi = next, nfi
	}
	return cur, nil
}

// dir checks one directory above incoming: owned by root or the running
// user, and writable by no one else unless it is sticky (entry then
// checks what is in it).
func (c *pathCheck) dir(path string, fi fs.FileInfo) error {
	uid, gid := owner(fi)
	if uid != 0 && uid != c.uid {
		return fmt.Errorf("%w: incoming %s: parent %s is writable by uid %s: %s", ErrUnsafeIncoming, c.incoming, path, userName(uid), unsafeFix)
	}
	perm := fi.Mode().Perm()
	if perm&0o022 == 0 || fi.Mode()&fs.ModeSticky != 0 {
		return nil
	}
	if perm&0o002 != 0 {
		return fmt.Errorf("%w: incoming %s: parent %s is world-writable: %s", ErrUnsafeIncoming, c.incoming, path, unsafeFix)
	}
	return fmt.Errorf("%w: incoming %s: parent %s is writable by group %s: %s", ErrUnsafeIncoming, c.incoming, path, groupName(gid), unsafeFix)
}

// entry checks the entry path (with info fi) of the directory parent: in
// a sticky directory that others can write, only its owner (and root) can
// rename or remove it, so that owner must be root or the running user.
func (c *pathCheck) entry(parent string, pfi fs.FileInfo, path string, fi fs.FileInfo) error {
	if pfi.Mode().Perm()&0o022 == 0 {
		return nil
	}
	if uid, _ := owner(fi); uid != 0 && uid != c.uid {
		return fmt.Errorf("%w: incoming %s: %s is owned by uid %s, who can replace it in %s, a sticky directory others can write: %s",
			ErrUnsafeIncoming, c.incoming, path, userName(uid), parent, unsafeFix)
	}
	return nil
}

func owner(fi fs.FileInfo) (uid, gid int) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, -1
	}
	return int(st.Uid), int(st.Gid)
}

// userName is "1001 (certsync)", or the number alone when it has no name.
func userName(uid int) string {
	s := strconv.Itoa(uid)
	if u, err := user.LookupId(s); err == nil {
		return s + " (" + u.Username + ")"
	}
	return s
}

func groupName(gid int) string {
	s := strconv.Itoa(gid)
	if g, err := user.LookupGroupId(s); err == nil {
		return s + " (" + g.Name + ")"
	}
	return s
}
