package pkg_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGoBuildVersion builds certnode with a plain `go build` (no make,
// no -ldflags) in a fresh clone of this repository and checks that its
// version names the clone's commit, and that a modified work tree is
// reported as dirty.
func TestGoBuildVersion(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	clone := filepath.Join(t.TempDir(), "src")
	run(t, "git", "clone", "--quiet", "--no-hardlinks", root, clone)
	rev := strings.TrimSpace(run(t, "git", "-C", clone, "rev-parse", "HEAD"))

	build := func() string {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "certnode")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/certnode")
		cmd.Dir = clone
		// The machine may turn VCS stamping off (GOFLAGS=-buildvcs=false);
		// a plain go build has it on.
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=auto")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		return strings.TrimSpace(run(t, bin, "version"))
	}
	v := build()
	t.Logf("clean: %s", v)
	if !strings.HasPrefix(v, "certnode ") || !strings.Contains(v, rev[:12]) || strings.Contains(v, "dirty") {
		t.Errorf("clean build: version %q, want one naming commit %s", v, rev[:12])
	}
	f := filepath.Join(clone, "cmd/certnode/main.go")
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, append(b, "\n// modified\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	v = build()
	t.Logf("modified: %s", v)
	if !strings.Contains(v, rev[:12]) || !strings.Contains(v, "dirty") {
		t.Errorf("modified work tree: version %q, want commit %s and dirty", v, rev[:12])
	}
}
