//go:build !linux

package devstack

import "syscall"

// setParentDeathSignal is a no-op where the kernel has no parent-death
// signal: servers left behind by a killed parent are recovered on the next
// start instead.
func setParentDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}
