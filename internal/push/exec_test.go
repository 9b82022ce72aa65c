package push

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certpush/certpush/internal/inventory"
)

func TestNormalizeFingerprint(t *testing.T) {
	sha256hex := strings.Repeat("ab", 32)
	for in, want := range map[string]string{
		"SHA256 Fingerprint=" + strings.ToUpper(strings.Repeat("AB:", 31)) + "AB": sha256hex,
		strings.Repeat("AB", 32):         sha256hex,
		strings.Repeat("ab:", 19) + "ab": strings.Repeat("ab", 20),
		"none":                           "",
		"":                               "",
	} {
		got, err := NormalizeFingerprint(in)
		if err != nil || got != want {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"abc", strings.Repeat("ab", 16), "zz" + strings.Repeat("ab", 31)} {
		if _, err := NormalizeFingerprint(bad); err == nil {
			t.Errorf("NormalizeFingerprint(%q): no error", bad)
		}
	}
}

// script writes an exec target.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// A target's command is bounded by its timeout, and its whole process
// group is killed then (and when the push is cancelled): nothing is left
// running.
func TestExecTimeoutAndCancel(t *testing.T) {
	b := newBundle(t)
	pids := filepath.Join(t.TempDir(), "pids")
	hang := script(t, "sleep 60 &\necho $! >> "+pids+"\necho $$ >> "+pids+"\nwait\n")
	p, err := New(b, Options{ExecOnly: true, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rs := p.Run(context.Background(), []inventory.Host{{Name: "lb", Type: inventory.TypeExec, Exec: []string{hang}, ExecTimeout: 500 * time.Millisecond}})
	if rs[0].Result != Failed || !strings.Contains(rs[0].ErrorText, "timeout 500ms") {
		t.Errorf("result %s %q, want failed with the timeout", rs[0].Result, rs[0].ErrorText)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	wantGone(t, pids)

	os.Remove(pids)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	rs = p.Run(ctx, []inventory.Host{{Name: "lb", Type: inventory.TypeExec, Exec: []string{hang}, ExecTimeout: time.Minute}})
	if rs[0].Result != Failed {
		t.Errorf("cancelled: result %s %q, want failed", rs[0].Result, rs[0].ErrorText)
	}
	wantGone(t, pids)
}

func wantGone(t *testing.T, pids string) {
	t.Helper()
	data, _ := os.ReadFile(pids)
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		t.Fatalf("pids %q", data)
	}
	for _, f := range fields {
		pid, _ := strconv.Atoi(f)
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			// A zombie awaiting its reaper counts as gone.
			if stat, _ := os.ReadFile("/proc/" + f + "/stat"); strings.Contains(string(stat), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("pid %d still runs", pid)
				break
			}
		}
	}
}

// The key is in the environment's file, never on the command line, and
// the directory is gone afterwards.
func TestExecArgvAndCleanup(t *testing.T) {
	b := newBundle(t)
	out := filepath.Join(t.TempDir(), "seen")
	target := script(t, `echo "$@" >> `+out+`
echo "$CERTPUSH_DIR" >> `+out+`
echo none
`)
	p, err := New(b, Options{ExecOnly: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	rs := p.Run(context.Background(), []inventory.Host{{Name: "lb", Type: inventory.TypeExec, Exec: []string{target, "--listener", "x"}}})
	if rs[0].Result != Planned {
		t.Fatalf("result %s %q", rs[0].Result, rs[0].ErrorText)
	}
	data, _ := os.ReadFile(out)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "--listener x current" {
		t.Fatalf("saw %q", lines)
	}
	if _, err := os.Stat(lines[1]); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", lines[1], err)
	}
}
