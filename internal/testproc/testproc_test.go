package testproc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond until it holds or ten seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether pid no longer runs (a zombie counts as gone).
func gone(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// start runs script with /bin/sh and stops it at the end of the test.
func start(t *testing.T, script string, opts Options) (*Proc, string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "sh.log")
	p, err := Start("sh", []string{"/bin/sh", "-c", script}, logPath, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p, logPath
}

// logged waits for the first line of the log and returns it as a pid.
func logged(t *testing.T, logPath string) int {
	t.Helper()
	var pid int
	waitFor(t, "the log", func() bool {
		line, _, _ := strings.Cut(Tail(logPath, 100), "\n")
		n, err := strconv.Atoi(line)
		pid = n
		return err == nil
	})
	return pid
}

// killLater kills pid when the test ends, for processes a test expects
// to survive Stop.
func killLater(t *testing.T, pid int) {
	t.Cleanup(func() {
		if !gone(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func TestStartAndStop(t *testing.T) {
	p, logPath := start(t, `echo "$$"; echo "$GREETING"; exec sleep 60`, Options{Env: []string{"GREETING=hello"}})
	if got := logged(t, logPath); got != p.Pid() {
		t.Errorf("logged pid %d, Pid() = %d", got, p.Pid())
	}
	waitFor(t, "the greeting", func() bool { return strings.HasSuffix(Tail(logPath, 100), "hello") })
	if p.Exited() || p.Err() != nil {
		t.Fatalf("exited early: %v", p.Err())
	}
	if pgid, err := syscall.Getpgid(p.Pid()); err != nil || pgid != p.Pid() {
		t.Errorf("process group %d (%v), want its own %d", pgid, err, p.Pid())
	}
	if p.Name() != "sh" || p.Log() != logPath {
		t.Errorf("Name() = %q, Log() = %q", p.Name(), p.Log())
	}
	fi, err := os.Stat(logPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("running after Stop")
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("Err() = %v, want killed by SIGTERM", p.Err())
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestExitStatus(t *testing.T) {
	p, _ := start(t, "exit 3", Options{})
	<-p.Done()
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", p.Err())
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop after exit: %v", err)
	}
}

func TestStopKillsWhatIgnoresTerm(t *testing.T) {
	p, logPath := start(t, `trap "" TERM; echo "$$"; while :; do sleep 0.05; done`, Options{})
	logged(t, logPath)
	p.wait = 200 * time.Millisecond
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("Err() = %v, want killed by SIGKILL", p.Err())
	}
}

func TestStopTree(t *testing.T) {
	tests := []struct {
		desc    string
		script  string // prints the pid of a process Stop must reach with Tree
		ownPgrp bool   // that process leaves the group
		exits   bool   // the leader exits by itself
	}{
		// A child that leaves the group, as sshd's session processes do.
		{desc: "child in its own session", script: `setsid sleep 60 & echo "$!"; wait`, ownPgrp: true},
		// A child that stays when the leader exits, as nginx workers do.
		{desc: "group outlives its leader", script: `sleep 60 & echo "$!"`, exits: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, tree := range []bool{false, true} {
				p, logPath := start(t, tc.script, Options{Tree: tree})
				child := logged(t, logPath)
				killLater(t, child)
				waitFor(t, "the child's process group", func() bool {
					pgid, err := syscall.Getpgid(child)
					return err == nil && (pgid == p.Pid()) != tc.ownPgrp
				})
				if tc.exits {
					<-p.Done()
				}
				if err := p.Stop(); err != nil {
					t.Fatal(err)
				}
				if tree {
					waitFor(t, "the child to go", func() bool { return gone(child) })
					continue
				}
				time.Sleep(50 * time.Millisecond)
				if gone(child) {
					t.Errorf("without Tree, pid %d went with its leader", child)
				}
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		desc string
		argv []string
		log  string
		want string
	}{
		{desc: "missing program", argv: []string{filepath.Join(dir, "nothing")}, log: filepath.Join(dir, "a.log"), want: "start prog: "},
		{desc: "log in a missing directory", argv: []string{"/bin/true"}, log: filepath.Join(dir, "no", "a.log"), want: "open log: "},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := Start("prog", tc.argv, tc.log, Options{})
			if err == nil {
				_ = p.Stop()
				t.Fatal("started")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestLogPerm(t *testing.T) {
	p, logPath := start(t, "exit 0", Options{LogPerm: 0o644})
	<-p.Done()
	fi, err := os.Stat(logPath)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("log mode %v (%v), want 0644", fi.Mode().Perm(), err)
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "log")
	if err := os.WriteFile(file, []byte("first\nsecond\nthird\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc string
		path string
		n    int
		want string
	}{
		{desc: "whole file", path: file, n: 100, want: "first\nsecond\nthird"},
		{desc: "last bytes", path: file, n: 7, want: "third"},
		{desc: "missing file", path: filepath.Join(dir, "none"), n: 100, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := Tail(tc.path, tc.n); got != tc.want {
				t.Errorf("Tail = %q, want %q", got, tc.want)
			}
		})
	}
}
