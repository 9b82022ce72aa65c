//go:build unix

package store

import "syscall"

const noFollow = syscall.O_NOFOLLOW
