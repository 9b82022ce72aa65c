//go:build !linux

package testproc

import "syscall"

// sysProcAttr puts a program in its own process group. Only Linux can tie
// a child's life to its parent's.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
