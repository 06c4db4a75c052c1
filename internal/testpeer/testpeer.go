// Package testpeer starts the real peers busbar's tests talk to
// (nats-server, mosquitto clients, chromium) on free 127.0.0.1 ports, and
// fails a test that needs a peer which is not installed, saying what to
// install: a missing peer never skips a test silently.
package testpeer

import (
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned: a test that asks for
// several ports (a peer's client, cluster and monitoring ports) gets
// distinct ones even when the kernel hands the same port out twice.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testpeer: no free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		handedOut.Lock()
		seen := handedOut.ports[port]
		if !seen {
			handedOut.ports[port] = true
		}
		handedOut.Unlock()
		if !seen {
			return port
		}
	}
	t.Fatal("testpeer: no port that was not handed out before")
	return 0
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// Addr is "127.0.0.1:PORT".
func Addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// Need returns the path of the program bin, or fails the test naming the
// Debian package that provides it (scripts/test installs it).
func Need(t testing.TB, bin, debianPkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("testpeer: %s is not installed: run `apt-get install %s` (scripts/test does this)", bin, debianPkg)
	}
	return p
}
