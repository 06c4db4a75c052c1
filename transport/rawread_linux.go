package transport

import (
	"io"
	"net"
	"os"
	"syscall"
)

// rawRead reads a TCP or Unix socket through syscall.RawConn, so the read
// loop waits for input holding no buffer: a read that finds the socket
// empty gives its burst buffer back to the pool before the runtime's
// poller parks it, and takes one (getBurst) once input arrives. A busy
// connection keeps its burst buffer from read to read; an idle one costs
// its stack and its state, not a read buffer. Read loop only.
type rawRead struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool // do, made once
	buf   []byte                // the burst buffer of the read in progress
	n     int
	errno syscall.Errno
	setUp bool // reads take burst buffers; before, a set-up buffer (setUpBuf)
}

// init enables raw reads when the Sink writes a socket descriptor.
func (r *rawRead) init(s Sink) {
	if fs, ok := s.(*fdSink); ok {
		r.rc = fs.rc
		r.fn = r.do
	}
}

func (r *rawRead) ok() bool { return r.rc != nil }

// markSetUp makes reads take burst buffers from now on.
func (r *rawRead) markSetUp() { r.setUp = true }

// do runs on the descriptor: a read that finds nothing gives the buffer
// back and waits (the runtime calls it again when input arrives).
func (r *rawRead) do(fd uintptr) bool {
	if r.buf == nil {
		if r.setUp {
			r.buf = getBurst()
		} else {
			r.buf = getSetUpBuf()
		}
	}
	for {
		n, errno := readFD(fd, r.buf)
		switch errno {
		case 0:
			r.n, r.errno = n, 0
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			putBurst(r.buf)
			r.buf = nil
			return false
		}
		r.n, r.errno = 0, errno
		return true
	}
}

// read waits for input and returns it in the burst buffer, valid until the
// next read (or handed over with take, see Conn.receivedRaw).
func (r *rawRead) read(c net.Conn) ([]byte, error) {
	if err := r.rc.Read(r.fn); err != nil {
		return nil, err // closed, or the read deadline passed
	}
	switch {
	case r.errno != 0:
		return nil, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(),
			Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", r.errno)}
	case r.n == 0:
		return nil, io.EOF
	}
	return r.buf[:r.n], nil
}

// take hands the burst buffer over to the caller (who keeps input in it).
func (r *rawRead) take() []byte {
	b := r.buf
	r.buf = nil
	return b
}

// release gives the burst buffer back to the pool.
func (r *rawRead) release() {
	if r.buf != nil {
		putBurst(r.buf)
		r.buf = nil
	}
}
