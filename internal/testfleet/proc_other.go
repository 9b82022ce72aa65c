//go:build !linux

package testfleet

import "syscall"

// sysProcAttr puts a daemon in its own process group and runs it as c when
// c is set. Only Linux can tie a child's life to its parent's.
func sysProcAttr(c *cred) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if c != nil {
		a.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, NoSetGroups: true}
	}
	return a
}
