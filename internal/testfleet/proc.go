package testfleet

import (
	"syscall"

	"github.com/certpush/certpush/internal/testproc"
)

// proc is one started daemon, known to the fleet's watchdog while it runs.
type proc struct {
	*testproc.Proc
	wd *watchdog

	stopped bool // stop has run; callers serialise calls to stop
}

// cred is the account a process runs as; nil runs it as the current user.
type cred struct {
	uid, gid uint32
}

// startProc starts argv in its own process group, with stdout and stderr
// appended to logPath, as c when c is set. The process is killed when this
// process dies, and by the watchdog.
func startProc(name string, argv []string, logPath string, c *cred, wd *watchdog) (*proc, error) {
	opts := testproc.Options{LogPerm: 0o644, Tree: true}
	if c != nil {
		opts.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, NoSetGroups: true}
	}
	tp, err := testproc.Start(name, argv, logPath, opts)
	if err != nil {
		return nil, err
	}
	wd.send("add", tp.Pid())
	return &proc{Proc: tp, wd: wd}, nil
}

// stop stops the daemon, its process group and every descendant (sshd's
// per-connection children leave the group with setsid; nginx workers
// outlive their master), then takes it off the watchdog's list.
func (p *proc) stop() error {
	if p.stopped {
		return nil
	}
	p.stopped = true
	if err := p.Stop(); err != nil {
		return err
	}
	p.wd.send("del", p.Pid())
	return nil
}
