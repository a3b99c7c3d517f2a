//go:build !linux

package main

import "syscall"

// setParentDeathSignal is Linux-only; elsewhere the benchmark stops its children itself.
func setParentDeathSignal(*syscall.SysProcAttr) {}
