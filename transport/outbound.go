package transport

import (
	"net"
	"sync"
	"time"

	"github.com/busbar/busbar/broker"
)

// RefThreshold is the payload size from which a protocol queues a
// reference to the (stable) payload instead of copying it into the
// pending buffer (AppendPayloadLocked). Below it, one memcpy into a
// buffer that is written anyway is cheaper than a retained allocation.
const RefThreshold = 4096

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

// inlineRounds bounds how many batches the goroutine that woke the queue
// writes itself before a writer goroutine takes over (others kept
// appending meanwhile).
const inlineRounds = 4

// Outbound is one connection's write queue: any goroutine appends; one
// goroutine at a time holds the writer role, takes the queue under the
// lock and writes it outside the lock, so no publisher waits on a socket.
// Appends never block: going over the pending limit reports false, and
// the caller closes the connection as a slow consumer. An idle connection
// holds no buffer and no goroutine.
//
// The writer role goes to whoever wakes an idle queue. With a TrySink
// (plain TCP on Linux) that goroutine writes the batch itself without
// waiting (a publisher's read loop, say: no goroutine is started and none
// is woken); what the socket does not take at once, and every batch of a
// Sink that cannot try, is written by a writer goroutine started for it,
// which exits when the queue is empty.
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
	running bool // a goroutine holds the writer role
	held    bool // the connection's read loop is handling a read: Wake waits for Release
	ended   bool // the writer finished for good (closed and drained, or failed)
	over    bool // ... and onEnd has returned: Done is closed
	done    chan struct{}

	w writer
}

// writer is how the queue is written; set once by Start. The slices are
// the writer role's (only the goroutine holding it touches them).
type writer struct {
	host     writerHost // nil until Start
	sink     Sink
	try      bool // sink is a TrySink
	deadline time.Duration
	// The lists of the batch written last, reused. While begun, they
	// hold a batch a write without waiting began, and carry the part of
	// it left for the writer goroutine; carry is also the batch being
	// written (a field, so writes allocate nothing).
	segs, owned [][]byte
	carry       net.Buffers
	begun       bool
}

// writerHost runs an Outbound's writer: a Conn, or the functions Start
// was given. An interface, so a Conn's queue allocates no closures.
type writerHost interface {
	spawnWriter(f func())
	setWriteDeadline(t time.Time)
	writerEnded(err error)
}

// funcHost is the writerHost of a queue started with Start.
type funcHost struct {
	setDeadline func(time.Time) error
	spawn       func(func())
	onEnd       func(error)
}

func (h *funcHost) spawnWriter(f func()) { h.spawn(f) }

func (h *funcHost) setWriteDeadline(t time.Time) {
	if h.setDeadline != nil {
		_ = h.setDeadline(t)
	}
}

func (h *funcHost) writerEnded(err error) {
	if h.onEnd != nil {
		h.onEnd(err)
	}
}

// NewOutbound makes a queue that holds at most maxPending bytes (0: no limit).
func NewOutbound(maxPending int64) *Outbound {
	return &Outbound{max: maxPending}
}

// Start sets how the queue is written. A writer goroutine is started
// through spawn only while the socket is not taking the bytes at once
// (or the sink cannot try), and exits when the queue is empty, so an idle
// connection costs no goroutine. Each blocking write has deadline (0:
// none; setDeadline may be nil). onEnd runs once, on a goroutine holding
// the writer role, when the queue is closed and drained (err nil) or a
// write failed (the queue is then closed and its contents dropped).
func (o *Outbound) Start(sink Sink, setDeadline func(time.Time) error, deadline time.Duration, spawn func(func()), onEnd func(error)) {
	o.startWith(sink, deadline, &funcHost{setDeadline: setDeadline, spawn: spawn, onEnd: onEnd})
}

func (o *Outbound) startWith(sink Sink, deadline time.Duration, host writerHost) {
	o.mu.Lock()
	if o.ended { // closed before it started: nothing will be written
		o.mu.Unlock()
		host.writerEnded(nil)
		return
	}
	_, try := sink.(TrySink)
	o.w.host, o.w.sink, o.w.try, o.w.deadline = host, sink, try, deadline
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

// AppendPayloadLocked queues m's payload, the same way for every
// protocol: a reference when it is large (RefThreshold) and sharing costs
// nothing (the payload is stable already) or saves copies (several
// subscribers share one Stable copy); else a copy into the chunks, which
// allocates nothing. For a borrowed m, on its publisher's goroutine
// (inside Deliver). o.mu held.
func (o *Outbound) AppendPayloadLocked(m *broker.Message) {
	p := m.Payload
	switch {
	case len(p) < RefThreshold:
		o.AppendLocked(p)
	case m.PayloadStable():
		o.AppendRefLocked(p)
	case m.Fanout() > 1:
		o.AppendRefLocked(m.Stable().Payload)
	default:
		o.AppendLocked(p)
	}
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

// Wake makes sure what is queued gets written (or the queue, once
// closed, ended). Never blocks: with a TrySink and no writer running, the
// calling goroutine writes what the socket takes at once and hands the
// rest, if any, to a writer goroutine. Cheap when a writer already runs.
// While held (Hold) it leaves the writing to Release. Any goroutine; no
// lock of the queue held.
func (o *Outbound) Wake() {
	o.mu.Lock()
	if o.running || o.ended || o.w.host == nil || (o.queued == 0 && !o.closed) || (o.held && !o.closed) {
		o.mu.Unlock()
		return
	}
	o.running = true
	if o.w.try && !o.closed {
		if o.writeInline() {
			return
		}
	} else {
		o.mu.Unlock()
	}
	o.w.host.spawnWriter(o.run)
}

// Hold defers writing until Release: a connection's read loop holds its
// own queue while the protocol handles a read, so what a handler queues
// (a CONNACK, a PONG) reaches the peer after the handler is done with the
// state it answers for, never in the middle (with writes that need no
// goroutine, the bytes would otherwise be on the wire at once). Other
// goroutines' deliveries to this connection wait for the read too.
// Closing is not deferred. Read loop.
func (o *Outbound) Hold() {
	o.mu.Lock()
	o.held = true
	o.mu.Unlock()
}

// Release ends a Hold and writes what was queued meanwhile. Read loop.
func (o *Outbound) Release() {
	o.mu.Lock()
	o.held = false
	o.mu.Unlock()
	o.Wake()
}

// writeInline writes batches without waiting, on the goroutine that woke
// the queue. o.mu held on entry, released on return; true when it gave
// the writer role back (nothing left), false when a writer goroutine must
// take over (the socket's buffer is full, a write failed, the queue was
// closed or kept filling).
func (o *Outbound) writeInline() bool {
	for range inlineRounds {
		segs, owned := o.takeLocked()
		o.mu.Unlock()
		o.w.carry = segs // a field: a local's address would escape to the heap
		_, err := o.w.sink.(TrySink).TryWriteBuffers(&o.w.carry)
		if err != nil || len(o.w.carry) > 0 {
			// The writer goroutine finishes this batch (and meets the
			// error again, which it reports).
			o.w.begun = true
			o.w.segs, o.w.owned = segs, owned
			return false
		}
		o.w.carry = nil
		o.recycle(segs, owned)
		switch {
		case o.closed:
			o.mu.Unlock()
			return false // the writer goroutine flushes the rest and ends the queue
		case o.queued == 0:
			o.running = false
			o.mu.Unlock()
			return true
		}
	}
	o.mu.Unlock()
	return false
}

// takeLocked swaps the queued batch out for writing. o.mu held, writer role.
func (o *Outbound) takeLocked() (segs, owned [][]byte) {
	o.seal()
	if o.cur != nil {
		o.owned = append(o.owned, o.cur)
		o.cur, o.start = nil, 0
	}
	segs, owned = o.segs, o.owned
	o.segs, o.owned = o.w.segs[:0], o.w.owned[:0]
	o.w.segs, o.w.owned = nil, nil
	o.writing, o.queued = o.queued, 0
	return segs, owned
}

// recycle returns a written batch's chunks to the pool and keeps its
// lists for the next batch. Writer role; returns with o.mu held.
func (o *Outbound) recycle(segs, owned [][]byte) {
	for _, c := range owned {
		putChunk(c)
	}
	clear(segs) // drop payload references for the GC
	clear(owned)
	o.mu.Lock()
	o.w.segs, o.w.owned = shrinkList(segs), shrinkList(owned)
	o.writing = 0
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
	noWriter := o.w.host == nil && !o.ended
	if noWriter {
		o.ended = true
		o.finishLocked()
	}
	o.mu.Unlock()
	if noWriter { // never started: nothing can be written
		return
	}
	o.Wake()
}

// Done is closed when the writer has finished for good.
func (o *Outbound) Done() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done == nil {
		o.done = make(chan struct{})
		if o.over {
			close(o.done)
		}
	}
	return o.done
}

// finishLocked marks the queue over and closes Done's channel if it
// exists (made on demand, so a connection nobody waits for never
// allocates one). o.mu held.
func (o *Outbound) finishLocked() {
	o.over = true
	if o.done != nil {
		close(o.done)
	}
}

// run is the writer goroutine: it writes batches until the queue is empty,
// then exits (or, once closed and drained, ends the queue).
func (o *Outbound) run() {
	if o.w.begun {
		if err := o.writeCarry(); err != nil {
			o.end(err)
			return
		}
	}
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

// writeCarry finishes the batch a write without waiting began. Writer
// goroutine.
func (o *Outbound) writeCarry() error {
	segs, owned := o.w.segs, o.w.owned
	o.w.segs, o.w.owned, o.w.begun = nil, nil, false
	var err error
	if len(o.w.carry) > 0 {
		err = o.blockingWrite()
	}
	o.w.carry = nil
	o.recycle(segs, owned)
	o.mu.Unlock()
	return err
}

// blockingWrite writes o.w.carry, waiting up to the write deadline.
// Writer goroutine.
func (o *Outbound) blockingWrite() error {
	if o.w.deadline > 0 {
		o.w.host.setWriteDeadline(time.Now().Add(o.w.deadline))
	}
	_, err := o.w.sink.WriteBuffers(&o.w.carry)
	return err
}

func (o *Outbound) end(err error) {
	o.mu.Lock()
	o.closed, o.ended, o.running = true, true, false
	if err != nil {
		o.abort = true
	}
	o.mu.Unlock()
	o.w.host.writerEnded(err)
	o.mu.Lock()
	o.finishLocked()
	o.mu.Unlock()
}

// flushOnce writes one batch. more: something was written (look again
// before sleeping). stop: closed and drained. Writer goroutine.
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
	segs, owned := o.takeLocked()
	o.mu.Unlock()
	o.w.carry = segs
	err = o.blockingWrite()
	o.w.carry = nil
	o.recycle(segs, owned)
	o.mu.Unlock()
	if err != nil {
		return false, true, err
	}
	return true, false, nil
}

// trim drops the lists an idle queue keeps for its next batch (a parked
// connection holds none); the next batch makes them again. Any goroutine.
func (o *Outbound) trim() {
	o.mu.Lock()
	if !o.running && len(o.segs) == 0 && len(o.owned) == 0 && o.cur == nil {
		o.segs, o.owned = nil, nil
		o.w.segs, o.w.owned, o.w.carry = nil, nil, nil
	}
	o.mu.Unlock()
}

// shrinkList keeps a segment list for reuse unless a burst made it large.
func shrinkList(l [][]byte) [][]byte {
	if cap(l) > 1024 {
		return nil
	}
	return l[:0]
}
