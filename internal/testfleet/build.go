package testfleet

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are certpush and certnode built from this module's source, for
// tests that run them as programs (certnode on the hosts, certpush from
// certbot's hook).
type Binaries struct {
	Dir      string // removed by Remove
	Certpush string
	Certnode string
}

// BuildBinaries builds both commands into a new directory (mode 0755, so
// that the fleet user can run them) with the go command on PATH.
func BuildBinaries() (*Binaries, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("find the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err := os.MkdirTemp("", "certpush-bin-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := &Binaries{Dir: dir, Certpush: filepath.Join(dir, "certpush"), Certnode: filepath.Join(dir, "certnode")}
	for bin, pkg := range map[string]string{b.Certnode: "./cmd/certnode", b.Certpush: "./cmd/certpush"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return b, nil
}

// Remove deletes the binaries.
func (b *Binaries) Remove() error { return os.RemoveAll(b.Dir) }
