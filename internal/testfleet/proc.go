package testfleet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopWait bounds how long a process gets to exit after SIGTERM before it is
// killed, and how long a killed process gets to be reaped.
const stopWait = 5 * time.Second

// proc is one started daemon. Its goroutine reaps it and closes done.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
	wd   *watchdog

	stopped bool // stop has run; callers serialise calls to stop
}

// cred is the account a process runs as; nil runs it as the current user.
type cred struct {
	uid, gid uint32
}

// startProc starts argv in its own process group, with stdout and stderr
// appended to logPath. The process is killed when this process dies.
func startProc(name string, argv []string, logPath string, c *cred, wd *watchdog) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = sysProcAttr(c)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), wd: wd}
	wd.send("add", cmd.Process.Pid)
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, to every descendant (sshd's
// per-connection children leave the group with setsid) and waits; after
// stopWait everything left is sent SIGKILL.
func (p *proc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	pid := p.pid()
	if p.exited() {
		// The group may outlive its leader (nginx workers do).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		p.wd.send("del", pid)
		return nil
	}
	kids := descendants(pid)
	signalAll(pid, kids, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopWait):
		signalAll(pid, append(kids, descendants(pid)...), syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(stopWait):
			return fmt.Errorf("stop %s: pid %d does not exit", p.name, pid)
		}
	}
	// Whatever is left of the group or of the descendants goes now.
	signalAll(pid, kids, syscall.SIGKILL)
	p.wd.send("del", pid)
	return nil
}

func signalAll(pgid int, pids []int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}

// descendants lists the processes below pid, read from /proc.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, err := parentOf(n)
		if err != nil {
			continue
		}
		children[ppid] = append(children[ppid], n)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentOf reads the parent pid from /proc/PID/stat.
func parentOf(pid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, errors.New("malformed stat")
	}
	return strconv.Atoi(f[1])
}

// tail returns the last n bytes of a log file, for error messages.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return strings.TrimSpace(string(data))
}
