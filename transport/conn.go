package transport

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// Handler is a protocol on a Conn: its parser and the handlers behind it.
// The Conn owns the socket, the read loop and its buffer, the outbound
// queue and its writer, the ping timer and the connection's figures.
type Handler interface {
	// Received handles b, the input read and not consumed yet (it starts
	// with what the last call left), and returns how many bytes from the
	// front it consumed: the rest stays at the front of the buffer for
	// the next call. need is the length of the unit (packet) at the front
	// when the rest is its beginning and the length is known, 0 otherwise:
	// the buffer grows to hold it. b is the read buffer, valid until
	// Received returns. An error ends the read loop. Read loop.
	Received(b []byte) (used, need int, err error)
	// Closing runs once, on the goroutine that called Close, when the
	// connection starts closing for reason: the protocol queues its last
	// words (an -ERR, a DISCONNECT) with Out().Write. The queue is closed
	// after it returns: flushed, or dropped for a slow consumer.
	Closing(reason error)
	// Ended runs once, on the read loop, when it has stopped with err
	// (io.EOF when the peer closed, the error Received returned, a read
	// error, net.ErrClosed after Close): the protocol closes the
	// connection with its reason and releases its state. The read loop's
	// goroutine exits after it returns.
	Ended(err error)
}

// DirectReader is an optional interface of a Handler: a payload that
// spans reads and is large enough is read straight into the buffer it
// ends up in (the NATS parser's), with no copy out of the read buffer.
// Read loop.
type DirectReader interface {
	// DirectBuf is the unfilled part of that buffer, or nil.
	DirectBuf() []byte
	// DirectFilled accounts n bytes read into DirectBuf's slice.
	DirectFilled(n int) error
}

// ConnConfig is how a Conn runs, fixed when the protocol makes it.
type ConnConfig struct {
	MaxPending    int64         // the Outbound's limit (max_pending); 0: none
	WriteDeadline time.Duration // bounds each blocking write; 0: none
	// ReadBuf and MaxReadBuf bound the read buffer (readBuf); 0:
	// DefaultReadBuf and DefaultMaxReadBuf.
	ReadBuf, MaxReadBuf int
	// PreSetUp, when set, is told the read buffer's size in bytes while
	// the connection is not set up (and 0 once it is): a protocol counts
	// unauthenticated connections' buffers against a budget with it. An
	// error ends the read loop with it.
	PreSetUp func(n int) error
	// Ping is the protocol's keep-alive probe (NATS "PING\r\n"); nil:
	// the Conn sends none. StartPing arms it: every ping_interval it is
	// queued, and past ping_max unanswered ones the Conn closes with
	// Stale.
	Ping  []byte
	Stale error
}

// Conn is one connection's plumbing, the same for every protocol (NATS,
// MQTT, the leaf node link, over TCP, TLS, WebSocket or an in-process
// pipe): the read loop with its buffer (readBuf's policy) and its
// hand-off after set-up, the Outbound queue and its writer, one rule for
// write errors, the ping timer, close-once with a reason, and the
// figures monitoring reads. A protocol embeds one, implements Handler,
// and keeps its parser, handlers and encoders.
//
// Write errors: a write that times out (write_deadline) is a slow
// consumer, as is a queue past max_pending (reported by the protocol's
// Deliver, closed by the broker): both are counted in the broker's
// SlowConsumers, as nats-server counts them. Any other write error (the
// peer reset the connection) closes it with a *broker.WriteError and is
// not counted.
type Conn struct {
	nc  net.Conn
	h   Handler
	b   *broker.Broker
	out Outbound

	// From ConnConfig.
	pingLine []byte
	stale    error
	preSetUp func(n int) error

	// Read loop state.
	rb     readBuf
	raw    rawRead // reads that wait without a buffer (Linux sockets)
	direct DirectReader
	rto    time.Duration // refresh the read deadline by it after each read
	rdead  int64         // unix ns of the read deadline set; 0: none
	pk     parking       // parked without a goroutine while idle (Linux sockets)

	reason atomic.Pointer[error]

	start    int64        // unix ns; set by Init
	last     atomic.Int64 // unix ns of the last read from the peer
	outMsgs  atomic.Int64
	outBytes atomic.Int64

	ping     *time.Timer
	pingSent atomic.Int64 // unix ns of the PING awaiting its PONG; 0: none
	rtt      atomic.Int64 // ns, the last PING round trip

	// The small fields together: a Conn is in every connection (its size
	// class shows in an idle connection's cost).
	closing  atomic.Bool
	linger   atomic.Bool // the writer half-closes after flushing; Drain closes
	pingsOut atomic.Int32
	setUp    bool // read loop
}

// Init prepares c for nc, before the broker knows the connection: from
// here on Close works (from any goroutine) and bytes can be queued; they
// are written once Start runs.
func (c *Conn) Init(b *broker.Broker, nc net.Conn, h Handler, cfg ConnConfig) {
	if cfg.ReadBuf <= 0 {
		cfg.ReadBuf = DefaultReadBuf
	}
	if cfg.MaxReadBuf <= 0 {
		cfg.MaxReadBuf = DefaultMaxReadBuf
	}
	c.nc, c.h, c.b = nc, h, b
	c.pingLine, c.stale, c.preSetUp = cfg.Ping, cfg.Stale, cfg.PreSetUp
	c.out.max, c.out.w.deadline = cfg.MaxPending, cfg.WriteDeadline
	c.rb.min, c.rb.max = int32(cfg.ReadBuf), int32(cfg.MaxReadBuf)
	c.direct, _ = h.(DirectReader)
	c.start = time.Now().UnixNano()
	c.last.Store(c.start)
	if cfg.Ping != nil {
		c.ping = time.AfterFunc(time.Hour, c.pinged)
		c.ping.Stop()
	}
}

// Start makes nc (the connection after a TLS upgrade, or the one Init
// had) the socket and starts writing what is queued. The protocol's
// goroutine, before Serve.
func (c *Conn) Start(nc net.Conn) {
	c.nc = nc
	sink := ConnSink(nc)
	c.raw.init(sink)
	c.out.startWith(sink, c.out.w.deadline, c)
}

// NetConn is the socket (after Start, the one Start was given).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Out is the connection's write queue.
func (c *Conn) Out() *Outbound { return &c.out }

// Wake makes the writer write what was queued (broker.Client's Wake).
func (c *Conn) Wake() { c.out.Wake() }

// Serve runs the read loop on the calling goroutine until the connection
// ends, then Handler.Ended. With handoff, once the protocol called SetUp
// Serve returns nil after that read and the loop goes on elsewhere: set-up
// (JSON, authentication) grew this goroutine's stack. A TCP or Unix socket
// on Linux parks (parking): no goroutine until input arrives, then a fresh
// one, which parks again once the connection is idle for ParkAfter. Any
// other connection goes on on a fresh goroutine at once, with a small
// stack. Without handoff Serve returns the error the loop ended with.
func (c *Conn) Serve(handoff bool) error {
	err := c.readLoop(handoff)
	if errors.Is(err, errHandoff) {
		c.handOff()
		return nil
	}
	c.end(err)
	return err
}

// handOff moves the read loop off the set-up goroutine: parked when it
// can be (nothing kept, the socket enrolled with the broker's parker),
// else onto a fresh goroutine. Read loop.
func (c *Conn) handOff() {
	if c.enroll() && c.parkable() && c.parkNow() {
		return
	}
	c.b.Go(c.loop)
}

// loop runs the read loop on a goroutine of its own (handed off, or
// resumed after parking) until the connection ends or parks.
func (c *Conn) loop() {
	err := c.readLoop(false)
	if err == errParked {
		return // the goroutine exits; the poller resumes the loop
	}
	c.end(err)
}

// resume runs the read loop again after parking, on a fresh goroutine
// (parker.wake): the read deadline the loop had is set again (one past
// already, after a keep-alive expired while parked, ends it as before).
func (c *Conn) resume() {
	c.restoreDeadline()
	c.loop()
}

// parkable reports whether the read loop holds nothing a read must go on
// with: no unconsumed input, no payload being read directly. Read loop.
func (c *Conn) parkable() bool {
	return c.raw.ok() && c.rb.kept == 0 && c.directBuf() == nil
}

func (c *Conn) end(err error) {
	c.leave()
	c.h.Ended(err)
	c.raw.release()
	c.rb.release()
}

// SetUp marks the connection set up (authenticated, CONNECT done): the
// read loop hands off after this read, and the buffer grows freely. Read
// loop.
func (c *Conn) SetUp() {
	if c.setUp {
		return
	}
	c.setUp = true
	c.raw.markSetUp()
	if c.preSetUp != nil {
		_ = c.preSetUp(0)
	}
}

// IsSetUp reports whether SetUp was called. Read loop.
func (c *Conn) IsSetUp() bool { return c.setUp }

// SetReadDeadline sets an absolute read deadline (a bound on set-up); it
// is cleared after the first read once the connection is set up, unless
// SetReadTimeout refreshes it. Read loop.
func (c *Conn) SetReadDeadline(t time.Time) {
	_ = c.nc.SetReadDeadline(t)
	c.rdead = 0
	if !t.IsZero() {
		c.rdead = t.UnixNano()
	}
}

// SetReadTimeout makes every read refresh the read deadline to d from
// then (a keep-alive: the peer must send something within d); 0: no
// deadline. A read past it ends the loop with a timeout error. Read loop.
func (c *Conn) SetReadTimeout(d time.Duration) { c.rto = d }

// readLoop reads and hands input to the protocol until the connection
// ends. With handoff it returns errHandoff after the read that completed
// set-up.
func (c *Conn) readLoop(handoff bool) error {
	for {
		var n int
		var err, perr error
		if d := c.directBuf(); d != nil {
			n, err = c.nc.Read(d)
			if n > 0 {
				c.last.Store(time.Now().UnixNano())
				c.out.Hold()
				perr = c.direct.DirectFilled(n)
				c.out.Release()
			}
		} else if c.raw.ok() && c.rb.kept == 0 {
			var b []byte
			b, err = c.raw.read(c.nc)
			if n = len(b); n > 0 {
				c.last.Store(time.Now().UnixNano())
				perr = c.receivedRaw(b)
			}
		} else {
			free := c.rb.free()
			n, err = c.nc.Read(free)
			if n > 0 {
				c.last.Store(time.Now().UnixNano())
				perr = c.received(n, n == len(free))
			}
		}
		if n > 0 {
			c.refreshDeadline()
		}
		if perr != nil {
			return perr
		}
		if err != nil {
			switch c.parkTimeout(err) {
			case parkedNow:
				return errParked
			case readOn:
				continue
			}
			return err
		}
		if handoff && c.setUp {
			return errHandoff
		}
	}
}

func (c *Conn) directBuf() []byte {
	if c.direct == nil || c.rb.kept > 0 {
		return nil
	}
	return c.direct.DirectBuf()
}

// received hands the buffer's input to the protocol and resizes it.
func (c *Conn) received(n int, filled bool) error {
	total := c.rb.kept + n
	c.out.Hold() // what the handlers queue goes out once they are done
	used, need, err := c.h.Received(c.rb.b[:total])
	c.out.Release()
	if err != nil {
		return err
	}
	if c.raw.ok() && used == total { // reads wait without a buffer again
		c.rb.release()
		if !c.setUp && c.preSetUp != nil {
			return c.preSetUp(0)
		}
		return nil
	}
	wasSetUp := c.setUp
	if c.rb.next(total, used, n, need, filled, c.setUp) && !wasSetUp && c.preSetUp != nil {
		return c.preSetUp(len(c.rb.b))
	}
	return nil
}

// receivedRaw hands a raw read's input (in a burst buffer) to the
// protocol and keeps what it left (readBuf.keepRaw).
func (c *Conn) receivedRaw(b []byte) error {
	c.out.Hold()
	used, need, err := c.h.Received(b)
	c.out.Release()
	if err != nil || used == len(b) {
		return err
	}
	if c.rb.keepRaw(b[used:], need, c.setUp, c.raw.take()) && !c.setUp && c.preSetUp != nil {
		return c.preSetUp(len(c.rb.b))
	}
	return nil
}

func (c *Conn) refreshDeadline() {
	switch {
	case c.rto > 0:
		t := time.Now().Add(c.rto)
		_ = c.nc.SetReadDeadline(t)
		c.rdead = t.UnixNano()
	case c.rdead != 0 && c.setUp:
		_ = c.nc.SetReadDeadline(time.Time{})
		c.rdead = 0
	}
}

// restoreDeadline sets the socket's read deadline to the one the read loop
// keeps (after a park request moved it, or after parking). Read loop.
func (c *Conn) restoreDeadline() {
	var t time.Time
	if c.rdead != 0 {
		t = time.Unix(0, c.rdead)
	}
	_ = c.nc.SetReadDeadline(t)
}

// Close ends the connection once, from any goroutine: the first reason
// wins (Reason) and later calls return false. Handler.Closing queues the
// protocol's last words; then the queue is flushed and the socket closed
// by the writer, or, for a slow consumer (errors.Is(reason,
// broker.ErrSlowConsumer)), the queue is dropped and the socket closed at
// once. The read loop then ends with net.ErrClosed (or what it met first);
// a parked one is resumed to end.
func (c *Conn) Close(reason error) bool {
	if !c.closing.CompareAndSwap(false, true) {
		return false
	}
	c.reason.Store(&reason)
	if c.ping != nil {
		c.ping.Stop()
	}
	c.h.Closing(reason)
	if errors.Is(reason, broker.ErrSlowConsumer) {
		c.out.Close(false)
		_ = c.nc.Close()
		c.wake()
		return true
	}
	c.out.Close(true)
	c.wake()
	return true
}

// Closing reports whether Close was called. Any goroutine.
func (c *Conn) Closing() bool { return c.closing.Load() }

// Reason is why the connection closed (Close's first reason), or nil
// while it is open. Any goroutine.
func (c *Conn) Reason() error {
	if r := c.reason.Load(); r != nil {
		return *r
	}
	return nil
}

// SetLinger makes the writer half-close the socket after its last bytes
// instead of closing it, so a peer still sending does not get a reset
// that would discard them; Drain then closes it. Before Close.
func (c *Conn) SetLinger(on bool) { c.linger.Store(on) }

// Drain reads and discards input after Close, for at most d and max
// bytes, until the writer has closed the socket (or the peer closed its
// side, when lingering; the socket is closed then). Read loop.
func (c *Conn) Drain(d time.Duration, max int64) {
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	_, _ = io.CopyN(io.Discard, c.nc, max)
	if c.linger.Load() {
		_ = c.nc.Close()
	}
}

// spawnWriter and setWriteDeadline run the queue's writer (writerHost).
func (c *Conn) spawnWriter(f func())         { c.b.Go(f) }
func (c *Conn) setWriteDeadline(t time.Time) { _ = c.nc.SetWriteDeadline(t) }

// writerEnded runs once the queue is closed and drained, or a write
// failed: the socket is closed (half-closed when lingering), which ends
// the read loop (writerHost).
func (c *Conn) writerEnded(err error) {
	if err != nil && !c.closing.Load() {
		we := &broker.WriteError{Err: err}
		if errors.Is(we, broker.ErrSlowConsumer) { // the write deadline passed
			c.b.CountSlowConsumer()
		}
		c.Close(we)
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && err == nil && c.linger.Load() {
		_ = cw.CloseWrite()
		return
	}
	_ = c.nc.Close()
}

// StartPing arms the ping timer (ConnConfig.Ping) at the broker's
// ping_interval.
func (c *Conn) StartPing() {
	if c.ping != nil && !c.closing.Load() {
		c.ping.Reset(c.b.Options().PingInterval)
	}
}

// pinged runs on the ping timer.
func (c *Conn) pinged() {
	if c.closing.Load() {
		return
	}
	opts := c.b.Options()
	if int(c.pingsOut.Add(1)) > opts.PingMax {
		c.Close(c.stale)
		return
	}
	c.SendPing()
	c.ping.Reset(opts.PingInterval)
}

// SendPing queues the protocol's PING, timing it for RTT when no other
// is awaiting its PONG. Any goroutine.
func (c *Conn) SendPing() {
	c.pingSent.CompareAndSwap(0, time.Now().UnixNano())
	c.out.Write(c.pingLine)
}

// Ponged records the peer's PONG: the pings are answered, and the round
// trip of the timed one is the RTT. Read loop.
func (c *Conn) Ponged() {
	c.pingsOut.Store(0)
	if t := c.pingSent.Swap(0); t != 0 {
		c.rtt.Store(time.Now().UnixNano() - t)
	}
}

// RTT is the last PING round trip (0: none measured). Any goroutine.
func (c *Conn) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// CountOut counts one message of n payload bytes queued for the peer
// (ConnStats' OutMsgs and OutBytes). Any goroutine.
func (c *Conn) CountOut(n int) {
	c.outMsgs.Add(1)
	c.outBytes.Add(int64(n))
}

// LastRead is when the last read returned input (unix ns; Init's time
// before any): inside Received, the time of the read that brought it.
// Any goroutine.
func (c *Conn) LastRead() int64 { return c.last.Load() }

// Stats are the connection's figures for monitoring (broker.ConnStats
// without Lang, Version and Reason, which the protocol names). Any
// goroutine, the broker's lock possibly held: atomics and the queue's
// leaf lock only.
func (c *Conn) Stats() broker.ConnStats {
	return broker.ConnStats{
		Start:        time.Unix(0, c.start),
		LastActivity: time.Unix(0, c.last.Load()),
		OutMsgs:      c.outMsgs.Load(),
		OutBytes:     c.outBytes.Load(),
		Pending:      c.out.Pending(),
		RTT:          c.RTT(),
	}
}
