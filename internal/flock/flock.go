// Package flock takes exclusive flock(2) locks on files that record the
// pid of their holder, so that a process that has to wait, or gives up,
// can say who holds the lock. The kernel releases a lock when its holder
// exits, however it exits: a lock file left behind is never stale.
package flock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lock is a held lock.
type Lock struct{ f *os.File }

// HeldError says that another process holds the lock.
type HeldError struct {
	Path string
	PID  int // 0 when the holder has not written its pid yet
	Err  error
}

func (e *HeldError) Error() string {
	who := "another process"
	if e.PID > 0 {
		who = "pid " + strconv.Itoa(e.PID)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s is held by %s: %v", e.Path, who, e.Err)
	}
	return fmt.Sprintf("%s is held by %s", e.Path, who)
}

func (e *HeldError) Unwrap() error { return e.Err }

// Acquire takes the lock at path, creating the file (mode 0600, never
// through a symlink) and its directory (mode dirMode) as needed. While
// another process holds it, Acquire calls waiting once with the holder's
// pid and retries until ctx is done; then it returns a *HeldError
// wrapping ctx's error. With a ctx that is already done it tries once.
func Acquire(ctx context.Context, path string, dirMode os.FileMode, waiting func(pid int)) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	delay, told := 10*time.Millisecond, false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			l := &Lock{f: f}
			l.writePID()
			return l, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if ctx.Err() != nil {
			f.Close()
			return nil, &HeldError{Path: path, PID: holder(path), Err: ctx.Err()}
		}
		if !told && waiting != nil {
			waiting(holder(path))
			told = true
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// writePID records the holder in the file. It is a courtesy for
// messages: the lock itself is the flock.
func (l *Lock) writePID() {
	if err := l.f.Truncate(0); err == nil {
		l.f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
}

// Release gives the lock up.
func (l *Lock) Release() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// holder reads the pid recorded at path; 0 when there is none.
func holder(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
