package testfleet

import "syscall"

// sysProcAttr puts a daemon in its own process group, makes it die with
// this process, and runs it as c when c is set.
func sysProcAttr(c *cred) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c != nil {
		a.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, NoSetGroups: true}
	}
	return a
}
