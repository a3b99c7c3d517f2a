package devstack

import "syscall"

// setParentDeathSignal makes the kernel send sig to the child when the
// thread that started it (see startChild) dies, so servers never outlive
// abacusd or a test binary, even when those are SIGKILLed.
func setParentDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) {
	attr.Pdeathsig = sig
}
