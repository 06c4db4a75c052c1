//go:build linux && !race

package transport

import (
	"syscall"
	"unsafe"
)

// readFD reads the non-blocking socket fd into b with a raw system call:
// no entersyscall, which at a low message rate wakes the runtime's
// sleeping sysmon thread on every read (a third of the broker's CPU at
// 5,000 msgs/s; the write side does the same, writevCall.do). A
// non-blocking read never blocks, so the P need not be handed over.
func readFD(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), e
}
