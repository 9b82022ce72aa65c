package testproc

import "syscall"

// sysProcAttr puts a program in its own process group and makes it die
// with this process.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
