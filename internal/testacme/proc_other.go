//go:build !linux

package testacme

import "syscall"

// sysProcAttr puts a program in its own process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
