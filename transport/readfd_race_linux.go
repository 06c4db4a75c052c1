//go:build linux && race

package transport

import "syscall"

// readFD reads fd into b. Race-enabled builds use syscall.Read, which
// tells the race detector about the kernel's write into b and its I/O
// synchronisation; the raw system call of other builds does not.
func readFD(fd uintptr, b []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), b)
	if err != nil {
		return 0, err.(syscall.Errno)
	}
	return n, 0
}
