package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// noTemps fails the test when dir holds anything but want.
func noTemps(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != len(want) {
		t.Fatalf("%s holds %v, want %v", dir, names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("%s holds %v, want %v", dir, names, want)
		}
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteFileMode(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	testCases := []struct {
		desc string
		perm fs.FileMode
	}{
		{desc: "private", perm: 0o600},
		{desc: "public despite the umask", perm: 0o644},
		{desc: "read only", perm: 0o400},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := WriteFile(path, []byte("new"), tc.perm); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, path); got != tc.perm {
				t.Errorf("mode %v, want %v", got, tc.perm)
			}
			if data, _ := os.ReadFile(path); string(data) != "new" {
				t.Errorf("content %q, want %q", data, "new")
			}
			noTemps(t, dir, "f")
		})
	}
}

// The temporary file has its final mode before the first byte is written:
// an empty one already has it, whatever the umask.
func TestWriteFileModeFromCreation(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for _, perm := range []fs.FileMode{0o600, 0o644} {
		tmp, err := writeTemp(t.TempDir(), "f", nil, perm)
		if err != nil {
			t.Fatal(err)
		}
		if got := mode(t, tmp); got != perm {
			t.Errorf("empty temporary file has mode %v, want %v", got, perm)
		}
	}
}

func TestWriteFileErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// The destination is a non-empty directory: the rename fails.
	path := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("data"), 0o644); err == nil {
		t.Fatal("WriteFile over a directory succeeded")
	}
	noTemps(t, dir, "d")
}

func TestCreateNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := CreateNew(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode %v, want 0600", got)
	}
	err := CreateNew(path, []byte("second"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateNew = %v, want fs.ErrExist", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "first" {
		t.Errorf("content %q, want the first write", data)
	}
	noTemps(t, dir, "key")
}

func TestReplaceSymlink(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "current")
	for _, target := range []string{"v1", "v2"} {
		if err := ReplaceSymlink(target, path); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(path); err != nil || got != target {
			t.Errorf("link points to %q (%v), want %q", got, err, target)
		}
	}
	noTemps(t, dir, "current")
}

func TestReplaceSymlinkErrorLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "current")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSymlink("v1", path); err == nil {
		t.Fatal("ReplaceSymlink over a directory succeeded")
	}
	noTemps(t, dir, "current")
}

func TestRootReplaceFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := RootReplaceFile(root, "sub/f.json", []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, filepath.Join(dir, "sub", "f.json")); got != 0o644 {
		t.Errorf("mode %v, want 0644", got)
	}
	noTemps(t, filepath.Join(dir, "sub"), "f.json")

	// A symlink out of the root is not followed.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := RootReplaceFile(root, "escape/f.json", []byte("{}"), 0o644); err == nil {
		t.Error("RootReplaceFile followed a symlink out of the root")
	}
	noTemps(t, outside)
}
