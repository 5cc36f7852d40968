//go:build linux

package accounts_test

import (
	"syscall"
	"time"
)

// rusageThread is Linux's RUSAGE_THREAD, which package syscall does not name.
const rusageThread = 1

// threadCPUTime returns the CPU time that the calling OS thread has used, user and
// system; the caller stays on one thread with runtime.LockOSThread. Unlike the wall
// clock it does not advance while other processes have the CPU.
func threadCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
