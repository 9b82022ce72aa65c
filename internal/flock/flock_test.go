package flock

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAcquireWaitsAndNamesHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	l, err := Acquire(t.Context(), path, 0o700, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("lock file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	// flock locks belong to the open file: a second open in this process
	// conflicts like another process would.
	done, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = Acquire(done, path, 0o700, nil)
	he, ok := errors.AsType[*HeldError](err)
	if !ok || he.PID != os.Getpid() || !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire while held = %v, want a HeldError naming pid %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), "held by pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("message %q does not name the holder", err)
	}

	// A waiter is told once, and gets the lock when it is released.
	var told []int
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		l2, err := Acquire(ctx, path, 0o700, func(pid int) { told = append(told, pid) })
		if err == nil {
			l2.Release()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	l.Release()
	if err := <-got; err != nil {
		t.Fatalf("waiting Acquire = %v", err)
	}
	if len(told) != 1 || told[0] != os.Getpid() {
		t.Errorf("waiting called with %v, want once with %d", told, os.Getpid())
	}
}

func TestAcquireRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, nil, 0o644)
	link := filepath.Join(dir, "lock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(t.Context(), link, 0o700, nil); err == nil {
		t.Fatal("Acquire through a symlink succeeded")
	}
}

// TestReleasedOnExit: a holder killed without releasing leaves no stale
// lock.
func TestReleasedOnExit(t *testing.T) {
	if os.Getenv("FLOCK_HOLD") != "" {
		l, err := Acquire(context.Background(), os.Getenv("FLOCK_HOLD"), 0o700, nil)
		if err != nil {
			os.Exit(3)
		}
		_ = l
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		return
	}
	path := filepath.Join(t.TempDir(), "lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestReleasedOnExit$")
	cmd.Env = append(os.Environ(), "FLOCK_HOLD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := out.Read(buf); err != nil || string(buf) != "held\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	done, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Acquire(done, path, 0o700, nil); err == nil {
		t.Fatal("lock not held by the child")
	} else if he, _ := errors.AsType[*HeldError](err); he == nil || he.PID != cmd.Process.Pid {
		t.Errorf("Acquire = %v, want held by the child %d", err, cmd.Process.Pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	l, err := Acquire(done, path, 0o700, nil)
	if err != nil {
		t.Fatalf("after the holder died: %v", err)
	}
	l.Release()
}
