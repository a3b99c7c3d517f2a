package main

import "syscall"

// setParentDeathSignal has the kernel kill the child when the thread that started it dies.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
