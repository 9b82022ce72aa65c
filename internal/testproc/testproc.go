// Package testproc runs the daemons that test harnesses start (sshd,
// nginx, pebble, ...): each in a process group of its own, tied to the
// life of this process where the system allows it, with its output in a
// log file, and stopped for sure: SIGTERM, a bounded wait, then SIGKILL.
package testproc

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

// StopWait bounds how long a process gets to exit after SIGTERM before it
// is killed, and how long a killed process gets to be reaped.
const StopWait = 5 * time.Second

// path is the whole PATH a started program sees.
const path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Options tune Start.
type Options struct {
	// Env is the environment after PATH; nothing else of this process's
	// environment is passed on.
	Env []string
	// LogPerm is the mode the log file is created with; 0 means 0600.
	LogPerm os.FileMode
	// Credential, when set, runs the program as that account.
	Credential *syscall.Credential
	// Tree is for programs whose children leave the process group (sshd's
	// per-connection children call setsid) or outlive their leader (nginx
	// workers): Stop signals every descendant too, and kills what is left
	// of the group once the leader has exited.
	Tree bool
}

// Proc is one started program. A goroutine of its own reaps it.
type Proc struct {
	name string
	log  string
	tree bool
	wait time.Duration // StopWait
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Start starts argv in its own process group, with stdout and stderr
// appended to logPath. On Linux the program is killed when this process
// dies. name is used in errors.
func Start(name string, argv []string, logPath string, opts Options) (*Proc, error) {
	perm := opts.LogPerm
	if perm == 0 {
		perm = 0o600
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, perm)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append([]string{path}, opts.Env...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = opts.Credential
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, log: logPath, tree: opts.Tree, wait: StopWait, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name returns the name the program was started with.
func (p *Proc) Name() string { return p.name }

// Log returns the path of the program's log file.
func (p *Proc) Log() string { return p.log }

// Pid returns the program's pid, which is also its process group id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the program has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err returns how the program exited, as exec.Cmd.Wait does; it is set
// once Done is closed.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Exited reports whether the program has exited and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the program's process group (with Options.Tree,
// to every descendant too) and waits for the program to exit; after
// StopWait everything is sent SIGKILL, and after StopWait more Stop gives
// up with an error. Stop on an exited program returns nil.
func (p *Proc) Stop() error {
	pid := p.Pid()
	if p.Exited() {
		if p.tree {
			// The group may outlive its leader (nginx workers do).
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		return nil
	}
	var kids []int
	if p.tree {
		kids = descendants(pid)
	}
	signalAll(pid, kids, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.wait):
		all := kids[:len(kids):len(kids)]
		if p.tree {
			all = append(all, descendants(pid)...)
		}
		signalAll(pid, all, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(p.wait):
			return fmt.Errorf("stop %s: pid %d does not exit", p.name, pid)
		}
	}
	if p.tree {
		// Whatever is left of the group or of the descendants goes now.
		signalAll(pid, kids, syscall.SIGKILL)
	}
	return nil
}

// signalAll sends sig to the process group pgid and to each of pids.
func signalAll(pgid int, pids []int, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
}

// descendants lists the processes below pid, read from /proc; none where
// there is no /proc.
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

// Tail returns the last n bytes of the file at path, trimmed of white
// space, for error messages; "" when it cannot be read.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return strings.TrimSpace(string(data))
}
