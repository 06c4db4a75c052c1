package testpeer

import (
	"net"
	"testing"
)

func TestFreePortIsBindable(t *testing.T) {
	p := FreePort(t)
	if p <= 0 || p > 65535 {
		t.Fatalf("port %d out of range", p)
	}
	l, err := net.Listen("tcp", Addr(p))
	if err != nil {
		t.Fatalf("FreePort gave %d but it cannot be bound: %v", p, err)
	}
	l.Close()
}

func TestNeedFindsInstalledProgram(t *testing.T) {
	if got := Need(t, "sh", "dash"); got == "" {
		t.Fatal("Need returned an empty path for sh")
	}
}
