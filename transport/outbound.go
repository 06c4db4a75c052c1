package transport

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// RefThreshold is the payload size from which Outbound queues a reference
// to the (stable) payload instead of copying it into the pending buffer.
// Below it, one memcpy into a buffer that is written anyway is cheaper
// than a retained allocation.
const RefThreshold = 4096

// Sink writes a batch of buffers. TCP uses writev; a WebSocket sink adds
// one frame header for the whole batch; TLS coalesces into records.
type Sink interface {
	WriteBuffers(bufs *net.Buffers) (int64, error)
}

// SinkProvider is a connection that frames its own writes (a WebSocket
// connection: one frame per batch). ConnSink uses its Sink.
type SinkProvider interface {
	Sink() Sink
}

// ConnSink returns the Sink for a connection: its own when it is a
// SinkProvider, else writev for a plain one and coalesced records for TLS.
func ConnSink(c net.Conn) Sink {
	if sp, ok := c.(SinkProvider); ok {
		return sp.Sink()
	}
	if _, ok := c.(*tls.Conn); ok {
		return &tlsSink{c: c}
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

// ChunkSize is the size of the pooled buffers queued bytes are copied
// into. The queue is a list of chunks (and references to large payloads),
// written with one writev: it never grows a buffer by copying it.
const ChunkSize = 16 << 10

// chunks is shared by every connection of every broker: a cache of free
// memory, not running state.
var chunks = sync.Pool{New: func() any { return new([ChunkSize]byte) }}

func getChunk() []byte { return chunks.Get().(*[ChunkSize]byte)[:0] }

func putChunk(b []byte) {
	if cap(b) == ChunkSize {
		chunks.Put((*[ChunkSize]byte)(b[:ChunkSize]))
	}
}

// Outbound is one connection's write queue: any goroutine appends, one
// writer goroutine (Run) takes the queue under the lock and writes it
// outside the lock, so no publisher waits on a socket. Appends never
// block: going over the pending limit reports false, and the caller
// closes the connection as a slow consumer. An idle connection holds no
// buffer at all.
type Outbound struct {
	mu      sync.Mutex  // guards the fields up to w
	segs    net.Buffers // complete segments, in order: chunk slices and references
	owned   [][]byte    // chunks to recycle once segs are written
	cur     []byte      // chunk being filled; cur[start:] is not in segs yet
	start   int
	queued  int64 // bytes in segs and cur[start:]
	writing int64 // bytes the writer is writing now
	max     int64
	closed  bool
	abort   bool
	running bool // a writer goroutine exists
	ended   bool // the writer finished for good (closed and drained, or failed)

	w    writer
	done chan struct{}
}

// writer is how the queue is written; set once by Start.
type writer struct {
	sink        Sink
	setDeadline func(time.Time) error
	deadline    time.Duration
	spawn       func(func())
	onEnd       func(error)
	// Writer-goroutine state: the slices swapped in, reused.
	segs  net.Buffers
	owned [][]byte
}

// NewOutbound makes a queue that holds at most maxPending bytes (0: no limit).
func NewOutbound(maxPending int64) *Outbound {
	return &Outbound{max: maxPending, done: make(chan struct{})}
}

// Start sets how the queue is written. The writer goroutine is started
// through spawn only while there is something to write, and exits when
// the queue is empty, so an idle connection costs no goroutine. Each write
// has deadline (0: none; setDeadline may be nil). onEnd runs once, on the
// writer goroutine, when the queue is closed and drained (err nil) or a
// write failed (the queue is then closed and its contents dropped).
func (o *Outbound) Start(sink Sink, setDeadline func(time.Time) error, deadline time.Duration, spawn func(func()), onEnd func(error)) {
	o.mu.Lock()
	if o.ended { // closed before it started: nothing will be written
		o.mu.Unlock()
		onEnd(nil)
		return
	}
	o.w = writer{sink: sink, setDeadline: setDeadline, deadline: deadline, spawn: spawn, onEnd: onEnd}
	o.mu.Unlock()
	o.Wake()
}

// Lock and Unlock let a protocol append several pieces atomically with
// the *Locked methods.
func (o *Outbound) Lock()   { o.mu.Lock() }
func (o *Outbound) Unlock() { o.mu.Unlock() }

// AppendLocked copies p into the queue. o.mu held.
func (o *Outbound) AppendLocked(p []byte) {
	o.queued += int64(len(p))
	for len(p) > 0 {
		if o.cur == nil || len(o.cur) == cap(o.cur) {
			o.nextChunk()
		}
		n := copy(o.cur[len(o.cur):cap(o.cur)], p)
		o.cur = o.cur[:len(o.cur)+n]
		p = p[n:]
	}
}

// nextChunk seals the current chunk and starts a fresh one. o.mu held.
func (o *Outbound) nextChunk() {
	o.seal()
	if o.cur != nil {
		o.owned = append(o.owned, o.cur)
	}
	o.cur, o.start = getChunk(), 0
}

// seal moves the unsealed tail of the current chunk into segs. o.mu held.
func (o *Outbound) seal() {
	if o.cur != nil && len(o.cur) > o.start {
		o.segs = append(o.segs, o.cur[o.start:len(o.cur):len(o.cur)])
		o.start = len(o.cur)
	}
}

// HeadroomLocked returns the current chunk with room for at least n more
// bytes, for a protocol to append a header into in place; hand the result
// back with CommitLocked, having appended at most n bytes. o.mu held.
func (o *Outbound) HeadroomLocked(n int) []byte {
	if o.cur == nil || cap(o.cur)-len(o.cur) < n {
		if n > ChunkSize {
			o.seal()
			if o.cur != nil {
				o.owned = append(o.owned, o.cur)
			}
			o.cur, o.start = make([]byte, 0, n), 0 // one-off, not pooled
		} else {
			o.nextChunk()
		}
	}
	return o.cur
}

// CommitLocked stores a buffer obtained from HeadroomLocked. o.mu held.
func (o *Outbound) CommitLocked(b []byte) {
	o.queued += int64(len(b) - len(o.cur))
	o.cur = b
}

// AppendRefLocked queues a reference to p instead of a copy: p must
// never change again (broker.Message.Stable). For payloads of at least
// RefThreshold bytes. o.mu held.
func (o *Outbound) AppendRefLocked(p []byte) {
	o.seal()
	o.segs = append(o.segs, p)
	o.queued += int64(len(p))
}

// OverLocked reports whether the queue is past its limit. o.mu held.
func (o *Outbound) OverLocked() bool {
	return o.max > 0 && o.queued+o.writing > o.max
}

// ClosedLocked reports whether Close was called. o.mu held.
func (o *Outbound) ClosedLocked() bool { return o.closed }

// Write queues p and wakes the writer; for control messages (INFO, PONG,
// -ERR). It reports false once closed.
func (o *Outbound) Write(p []byte) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	o.AppendLocked(p)
	o.mu.Unlock()
	o.Wake()
	return true
}

// Pending is the number of bytes queued or being written.
func (o *Outbound) Pending() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.queued + o.writing
}

// Wake makes sure a writer runs when there is something to write (or the
// queue was closed). Never blocks; cheap when the writer already runs.
func (o *Outbound) Wake() {
	o.mu.Lock()
	if o.running || o.ended || o.w.spawn == nil || (o.queued == 0 && !o.closed) {
		o.mu.Unlock()
		return
	}
	o.running = true
	spawn := o.w.spawn
	o.mu.Unlock()
	spawn(o.run)
}

// Close stops the queue. With flush, the writer writes what is queued
// first; without (slow consumer, write error), it drops it. Done is closed
// once the writer has finished.
func (o *Outbound) Close(flush bool) {
	o.mu.Lock()
	o.closed = true
	if !flush {
		o.abort = true
	}
	noWriter := o.w.spawn == nil && !o.ended
	if noWriter {
		o.ended = true
	}
	o.mu.Unlock()
	if noWriter { // never started: nothing can be written
		close(o.done)
		return
	}
	o.Wake()
}

// Done is closed when the writer has finished for good.
func (o *Outbound) Done() <-chan struct{} { return o.done }

// run is the writer goroutine: it writes batches until the queue is empty,
// then exits (or, once closed and drained, ends the queue).
func (o *Outbound) run() {
	for {
		more, stop, err := o.flushOnce()
		if err != nil || stop {
			o.end(err)
			return
		}
		if more {
			continue
		}
		o.mu.Lock()
		if o.queued > 0 || o.closed {
			o.mu.Unlock()
			continue
		}
		o.running = false
		o.mu.Unlock()
		return
	}
}

func (o *Outbound) end(err error) {
	o.mu.Lock()
	o.closed, o.ended, o.running = true, true, false
	if err != nil {
		o.abort = true
	}
	o.mu.Unlock()
	if o.w.onEnd != nil {
		o.w.onEnd(err)
	}
	close(o.done)
}

// flushOnce writes one batch. more: something was written (look again
// before sleeping). stop: closed and drained.
func (o *Outbound) flushOnce() (more, stop bool, err error) {
	o.mu.Lock()
	if o.abort {
		o.mu.Unlock()
		return false, true, nil
	}
	if o.queued == 0 {
		closed := o.closed
		o.mu.Unlock()
		return false, closed, nil
	}
	o.seal()
	if o.cur != nil {
		o.owned = append(o.owned, o.cur)
		o.cur, o.start = nil, 0
	}
	segs, owned, n := o.segs, o.owned, o.queued
	o.segs, o.owned = o.w.segs[:0], o.w.owned[:0]
	o.queued, o.writing = 0, n
	o.mu.Unlock()

	if o.w.setDeadline != nil && o.w.deadline > 0 {
		_ = o.w.setDeadline(time.Now().Add(o.w.deadline))
	}
	iov := segs
	_, err = o.w.sink.WriteBuffers(&iov)

	for _, c := range owned {
		putChunk(c)
	}
	clear(segs) // drop payload references for the GC
	clear(owned)
	o.mu.Lock()
	o.w.segs, o.w.owned = shrinkList(segs), shrinkList(owned)
	o.writing = 0
	o.mu.Unlock()
	if err != nil {
		return false, true, err
	}
	return true, false, nil
}

// shrinkList keeps a segment list for reuse unless a burst made it large.
func shrinkList(l [][]byte) [][]byte {
	if cap(l) > 1024 {
		return nil
	}
	return l[:0]
}
