package transport

import (
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// fdSink is writev on a TCP or Unix socket, with TryWriteBuffers: one
// writev on the non-blocking descriptor (Go's sockets are), through
// syscall.RawConn so the runtime's poller keeps the descriptor's state.
type fdSink struct {
	netSink
	rc syscall.RawConn
}

func trySink(c net.Conn) Sink {
	var sc syscall.Conn
	switch t := c.(type) {
	case *net.TCPConn:
		sc = t
	case *net.UnixConn:
		sc = t
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &fdSink{netSink: netSink{c}, rc: rc}
}

// maxIov is Linux's IOV_MAX: the most buffers one writev takes.
const maxIov = 1024

// writevCall is one non-blocking writev's arguments and result. Pooled,
// with its method value made once, so a write allocates nothing.
type writevCall struct {
	iov []syscall.Iovec
	raw bool // a small batch: a raw syscall (do)
	n   int
	err syscall.Errno
	fn  func(fd uintptr) bool
}

var writevCalls = sync.Pool{New: func() any {
	w := &writevCall{iov: make([]syscall.Iovec, 0, 64)}
	w.fn = w.do
	return w
}}

// rawWriteMax is the largest batch written with a raw syscall (do).
const rawWriteMax = 64 << 10

// do runs on the descriptor; it never waits (done is always true).
//
// A batch of up to rawWriteMax bytes is written with a raw syscall,
// without the runtime's entersyscall/exitsyscall: the descriptor is
// non-blocking, so the call returns once the socket has taken what fits,
// within microseconds, and the runtime need not be ready to hand the P to
// another thread. entersyscall also wakes sysmon whenever it sleeps
// because every P was idle, which is a broker's state between two
// messages at a low rate: in profiles of a paced 5,000 msgs/s run (issue
// 19) sysmon's wake-ups, 20 µs naps and futex sleeps were a third of the
// broker's CPU. They stop only when the socket read of the same path is a
// raw syscall too. A larger batch (a busy connection: sysmon is awake
// anyway) keeps the ordinary syscall, so that a long copy into the socket
// can give its P to another thread.
func (w *writevCall) do(fd uintptr) bool {
	for {
		var r uintptr
		var e syscall.Errno
		if w.raw {
			r, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.iov))), uintptr(len(w.iov)))
		} else {
			r, _, e = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.iov))), uintptr(len(w.iov)))
		}
		if e == syscall.EINTR {
			continue
		}
		w.n, w.err = int(r), e
		if e != 0 {
			w.n = 0
		}
		return true
	}
}

// TryWriteBuffers writes what the socket takes now, without waiting.
// Any goroutine, while no other write runs on the connection (Outbound's
// writer role).
func (s *fdSink) TryWriteBuffers(b *net.Buffers) (int64, error) {
	w := writevCalls.Get().(*writevCall)
	defer writevCalls.Put(w)
	var total int64
	for len(*b) > 0 {
		w.iov = w.iov[:0]
		var want int64
		for _, p := range *b {
			if len(w.iov) == maxIov {
				break
			}
			if len(p) == 0 {
				continue
			}
			w.iov = append(w.iov, syscall.Iovec{Base: unsafe.SliceData(p)})
			w.iov[len(w.iov)-1].SetLen(len(p))
			want += int64(len(p))
		}
		if want == 0 {
			*b = (*b)[:0]
			break
		}
		w.raw = want <= rawWriteMax
		err := s.rc.Write(w.fn)
		clear(w.iov) // the pool keeps no buffer alive
		if err != nil {
			return total, err
		}
		switch {
		case w.err == syscall.EAGAIN:
			return total, nil
		case w.err != 0:
			return total, &net.OpError{Op: "writev", Net: s.c.LocalAddr().Network(),
				Source: s.c.LocalAddr(), Addr: s.c.RemoteAddr(), Err: os.NewSyscallError("writev", w.err)}
		}
		total += int64(w.n)
		consume(b, int64(w.n))
		if int64(w.n) < want {
			return total, nil // the socket's buffer is full
		}
	}
	return total, nil
}
