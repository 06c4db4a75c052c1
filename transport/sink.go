package transport

import (
	"crypto/tls"
	"net"
)

// Sink writes a batch of buffers. TCP uses writev; a WebSocket sink adds
// one frame header for the whole batch; TLS coalesces into records.
type Sink interface {
	WriteBuffers(bufs *net.Buffers) (int64, error)
}

// TrySink is a Sink that can also write without waiting: TryWriteBuffers
// writes what the socket takes at once, removes it from the front of bufs
// and returns; what is left (the socket's buffer is full) is raw bytes the
// caller finishes with WriteBuffers. Outbound uses it to write a batch on
// the goroutine that woke it (no writer goroutine, no hand-off) whenever
// no writer is running. Plain TCP and Unix sockets on Linux have one
// (ConnSink); TLS, WebSocket and pipes do not.
type TrySink interface {
	Sink
	TryWriteBuffers(bufs *net.Buffers) (int64, error)
}

// SinkProvider is a connection that frames its own writes (a WebSocket
// connection: one frame per batch). ConnSink uses its Sink.
type SinkProvider interface {
	Sink() Sink
}

// ConnSink returns the Sink for a connection: its own when it is a
// SinkProvider, coalesced records for TLS, else writev (a TrySink where
// the platform allows writing without waiting).
func ConnSink(c net.Conn) Sink {
	if sp, ok := c.(SinkProvider); ok {
		return sp.Sink()
	}
	if _, ok := c.(*tls.Conn); ok {
		return &tlsSink{c: c}
	}
	if s := trySink(c); s != nil {
		return s
	}
	return netSink{c}
}

type netSink struct{ c net.Conn }

func (s netSink) WriteBuffers(b *net.Buffers) (int64, error) { return b.WriteTo(s.c) }

// tlsSink coalesces small buffers into ≤16 KiB writes so tls.Conn makes
// full records instead of one per buffer.
type tlsSink struct {
	c       net.Conn
	scratch []byte
}

func (s *tlsSink) WriteBuffers(b *net.Buffers) (int64, error) {
	var n int64
	for _, p := range *b {
		if len(s.scratch)+len(p) > 16<<10 && len(s.scratch) > 0 {
			w, err := s.c.Write(s.scratch)
			n += int64(w)
			s.scratch = s.scratch[:0]
			if err != nil {
				return n, err
			}
		}
		if len(p) >= 16<<10 {
			w, err := s.c.Write(p)
			n += int64(w)
			if err != nil {
				return n, err
			}
			continue
		}
		s.scratch = append(s.scratch, p...)
	}
	if len(s.scratch) > 0 {
		w, err := s.c.Write(s.scratch)
		n += int64(w)
		s.scratch = s.scratch[:0]
		if err != nil {
			return n, err
		}
	}
	*b = (*b)[:0]
	return n, nil
}

// consume removes the first n bytes from b.
func consume(b *net.Buffers, n int64) {
	for len(*b) > 0 && n > 0 {
		if l := int64(len((*b)[0])); l <= n {
			n -= l
			(*b)[0] = nil
			*b = (*b)[1:]
			continue
		}
		(*b)[0] = (*b)[0][n:]
		return
	}
	for len(*b) > 0 && len((*b)[0]) == 0 {
		*b = (*b)[1:]
	}
}
