package transport

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/busbar/busbar/broker"
)

// A connection's park states (parking.state).
const (
	stRunning int32 = iota // a goroutine runs the read loop (or is about to)
	stAsked                // the sweeper asked the loop to park: its read deadline is in the past
	stParked               // no goroutine: input, Close or the keep-alive timer resumes it
)

// parking is a Conn's part in its broker's parker, small (every
// connection has one): the rest is in its slot. p and slot are set once,
// by enroll, on the read loop.
type parking struct {
	p     *parker
	state atomic.Int32
	slot  int32 // the connection's index in p.slots
}

// slot is an enrolled connection's parking state in p.slots. p.mu.
type slot struct {
	c     *Conn       // nil: a free slot
	gen   uint32      // the connection's last park: events of an earlier one are ignored
	asked int64       // c.last when the sweeper asked it to park
	veto  int64       // c.last when it could not park: not asked again before a read
	timer *time.Timer // resumes it when its read deadline passes while parked
}

// parkerKey is the broker extension holding its parker.
type parkerKey struct{}

// parker parks one broker's idle connections (TCP and Unix sockets read
// raw): a parked connection has no goroutine, only its socket registered
// with an epoll instance of the parker's. The epoll descriptor itself
// waits in the runtime's netpoller (it is readable when a registered
// socket is), so no thread blocks in epoll_wait: one goroutine, started
// with the first connection and ended by Shutdown, takes the events and
// resumes each connection on a fresh goroutine, and between events sweeps
// the enrolled connections for idle ones to park. Events carry a slot and
// a park number, never a descriptor (descriptors are reused).
type parker struct {
	b      *broker.Broker
	mu     sync.Mutex
	slots  []slot // enrolled connections (set up, read raw)
	free   []int32
	n      int    // enrolled
	parked int    // parked now
	gen    uint32 // the last park's number
	ep     *os.File
	eprc   syscall.RawConn
	closed bool // the broker shuts down (or epoll failed): nothing parks

	// ctl's arguments and result, and the functions it runs on the two
	// descriptors, made once (so a park allocates nothing). p.mu held.
	ctlOp  int
	ctlFd  uintptr
	ctlEv  syscall.EpollEvent
	ctlErr error
	onSock func(fd uintptr)
	onEp   func(ep uintptr)

	// The poller goroutine's.
	events []syscall.EpollEvent
	nev    int
	everr  error
	wait   func(fd uintptr) bool
	ready  []*Conn
}

// at is c's slot. p.mu held.
func (p *parker) at(c *Conn) *slot { return &p.slots[c.pk.slot] }

// aLongTimeAgo is the read deadline that asks a read loop to park.
var aLongTimeAgo = time.Unix(1, 0)

// parkEvents is what a parked socket waits for: input or a hang-up,
// reported once (the parker deletes it when it resumes the connection),
// level-triggered so input that came before it was added counts.
const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// enroll registers the connection with its broker's parker, which asks it
// to park once idle for ParkAfter, and reports whether it can park: a
// socket read raw, its broker not shutting down. Read loop, at the
// hand-off (set up).
func (c *Conn) enroll() bool {
	if !c.raw.ok() {
		return false
	}
	p := c.b.Extension(parkerKey{}, func() any { return &parker{b: c.b} }).(*parker)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.startLocked() {
		return false
	}
	i := int32(len(p.slots))
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
		p.slots[i] = slot{c: c}
	} else {
		p.slots = append(p.slots, slot{c: c})
	}
	c.pk.p, c.pk.slot = p, i
	if p.n++; p.n == 1 {
		_ = p.ep.SetReadDeadline(time.Now().Add(sweepEvery()))
	}
	return true
}

// leave takes an ending connection off its parker. Read loop, before
// Handler.Ended (whose Drain reads with a deadline of its own).
func (c *Conn) leave() {
	k := &c.pk
	p := k.p
	if p == nil {
		return
	}
	p.mu.Lock()
	if s := p.at(c); s.timer != nil {
		s.timer.Stop()
	}
	p.slots[k.slot] = slot{}
	p.free = append(p.free, k.slot)
	p.n--
	p.mu.Unlock()
}

// park ends the read loop's goroutine: the socket is registered with the
// poller. With a read deadline (MQTT keep-alive) a timer resumes it when
// the deadline passes, and the resumed read ends the connection as
// before. It reports false when the connection cannot park (closing, its
// socket closed, the broker shutting down): the loop reads on. Read loop,
// enrolled, nothing kept (parkable), buffers released (shed); p.mu held.
func (c *Conn) park() bool {
	k, p := &c.pk, c.pk.p
	if p.closed {
		k.state.Store(stRunning)
		return false
	}
	p.gen++
	s := p.at(c)
	s.gen = p.gen
	p.parked++
	// Close sets closing before it wakes: either it sees the connection
	// parked (its wake waits for p.mu), or this sees it closing.
	k.state.Store(stParked)
	if c.closing.Load() {
		return !c.unpark()
	}
	p.ctlEv = syscall.EpollEvent{Events: parkEvents, Fd: k.slot, Pad: int32(s.gen)}
	if err := p.ctl(c, syscall.EPOLL_CTL_ADD); err != nil {
		return !c.unpark() // the socket closed: the read says so
	}
	if c.rdead != 0 {
		d := time.Until(time.Unix(0, c.rdead))
		if s.timer == nil {
			s.timer = time.AfterFunc(d, c.wake)
		} else {
			s.timer.Reset(d)
		}
	}
	return true
}

// parkNow parks at the hand-off (park, taking p.mu). Read loop.
func (c *Conn) parkNow() bool {
	c.shed()
	p := c.pk.p
	p.mu.Lock()
	defer p.mu.Unlock()
	return c.park()
}

// shed gives the read buffers back to their pools and drops the write
// queue's idle lists, before parking (outside p.mu: the queue's lock is
// never taken under it). Read loop.
func (c *Conn) shed() {
	c.raw.release()
	c.rb.release()
	c.out.trim()
}

// unpark undoes a park that could not complete, unless a wake took the
// connection meanwhile (then the wake resumes it). p.mu held.
func (c *Conn) unpark() bool {
	if !c.pk.state.CompareAndSwap(stParked, stRunning) {
		return false
	}
	c.pk.p.parked--
	return true
}

// wake resumes a parked connection on a fresh goroutine, and does nothing
// to one that is not parked. The poller (input or a hang-up), Close, the
// keep-alive timer and the parker's shutdown call it: the state's CAS lets
// exactly one of them resume it. Any goroutine, p.mu not held.
func (c *Conn) wake() {
	k := &c.pk
	if !k.state.CompareAndSwap(stParked, stRunning) {
		return
	}
	p := k.p
	p.mu.Lock()
	// Under the socket's Control: a closed socket (it left the epoll set
	// with its last descriptor) is never touched, nor a reused number.
	_ = p.ctl(c, syscall.EPOLL_CTL_DEL)
	p.parked--
	if s := p.at(c); s.timer != nil {
		s.timer.Stop()
	}
	p.mu.Unlock()
	c.b.Go(c.resume)
}

// parkTimeout decides what a read that failed with err does while the
// sweeper asks the loop to park: a deadline of the protocol's that passed
// (keep-alive, set-up) ends the loop as before (endRead, also for any
// error but a timeout, or when nothing was asked); input since the
// request, or input the loop must complete (a unit cut by the read, a
// payload read directly), makes it read on with its deadline back
// (readOn); an idle loop parks (parkedNow). Read loop.
func (c *Conn) parkTimeout(err error) parkVerdict {
	k := &c.pk
	if k.state.Load() != stAsked || !errors.Is(err, os.ErrDeadlineExceeded) {
		return endRead
	}
	if c.rdead != 0 && time.Now().UnixNano() >= c.rdead {
		k.state.Store(stRunning)
		return endRead
	}
	parkable := c.parkable()
	if parkable {
		c.shed() // the read finds them again if it does not park
	}
	p := k.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if last := c.last.Load(); last == p.at(c).asked {
		if parkable {
			if c.park() {
				return parkedNow
			}
		} else {
			p.at(c).veto = last
		}
	}
	// Running again before the deadline is back: the sweeper moves it to
	// the past only while asking (p.mu held), so this read cannot time
	// out on an old request.
	k.state.Store(stRunning)
	c.restoreDeadline()
	return readOn
}

// sweepEvery is how often the parker looks for idle connections.
func sweepEvery() time.Duration { return max(ParkAfter()/3, 10*time.Millisecond) }

// startLocked starts the parker with its first connection: the epoll
// instance and the poller goroutine, which ends when the broker shuts
// down. It reports whether connections can park. p.mu held.
func (p *parker) startLocked() bool {
	if p.ep != nil || p.closed {
		return !p.closed
	}
	if p.b.Context().Err() != nil {
		p.closed = true
		return false
	}
	ep, err := openEpoll()
	if err != nil {
		p.closed = true
		p.b.Logger().Warn("transport: idle connections cannot park", "err", err)
		return false
	}
	p.ep = ep
	p.eprc, _ = ep.SyscallConn()
	p.events = make([]syscall.EpollEvent, 128)
	p.wait = p.waitEvents
	p.onSock, p.onEp = p.ctlSock, p.ctlEp
	p.b.Go(p.run)
	context.AfterFunc(p.b.Context(), func() { _ = ep.Close() })
	return true
}

// openEpoll makes a non-blocking epoll instance the runtime's netpoller
// watches (os.NewFile registers a non-blocking descriptor with it), so
// reading it through RawConn waits without a thread.
func openEpoll() (*os.File, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("setnonblock", err)
	}
	f := os.NewFile(uintptr(fd), "busbar-parker")
	if err := f.SetReadDeadline(time.Time{}); err != nil { // not in the netpoller
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// run is the poller goroutine: it takes the parked sockets' events and
// sweeps for idle connections (the epoll file's read deadline), until the
// broker shuts down (the file is closed), then resumes every parked
// connection so Shutdown's Close ends it.
func (p *parker) run() {
	for {
		err := p.eprc.Read(p.wait)
		switch {
		case err == nil && p.everr == nil:
			p.fired(p.events[:p.nev])
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.sweep()
		default: // closed (Shutdown), or epoll_wait failed
			p.stop()
			return
		}
	}
}

// waitEvents takes the ready events without waiting; false makes the
// runtime wait until the epoll descriptor is readable. Poller.
func (p *parker) waitEvents(fd uintptr) bool {
	for {
		n, err := syscall.EpollWait(int(fd), p.events, 0)
		if err == syscall.EINTR {
			continue
		}
		p.nev, p.everr = n, err
		return n > 0 || err != nil
	}
}

// fired resumes the connections whose sockets became readable or hung up.
// Poller.
func (p *parker) fired(evs []syscall.EpollEvent) {
	p.mu.Lock()
	for _, ev := range evs {
		if ev.Fd < 0 || int(ev.Fd) >= len(p.slots) {
			continue
		}
		if s := &p.slots[ev.Fd]; s.c != nil && s.gen == uint32(ev.Pad) {
			p.ready = append(p.ready, s.c)
		}
	}
	p.mu.Unlock()
	for i, c := range p.ready {
		c.wake()
		p.ready[i] = nil
	}
	p.ready = p.ready[:0]
}

// sweep asks every connection idle for ParkAfter to park: its read
// deadline is moved to the past, which ends its loop's wait
// (parkTimeout). One asked before and still idle is asked again (its loop
// may have set its own deadline over the request). Poller.
func (p *parker) sweep() {
	idle := int64(ParkAfter())
	now := time.Now().UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.slots {
		s := &p.slots[i]
		if s.c == nil {
			continue
		}
		c := s.c
		last := c.last.Load()
		if now-last < idle || last == s.veto {
			continue
		}
		if !c.pk.state.CompareAndSwap(stRunning, stAsked) && c.pk.state.Load() != stAsked {
			continue // parked
		}
		s.asked = last
		_ = c.nc.SetReadDeadline(aLongTimeAgo)
	}
	var next time.Time // nothing enrolled: no sweep until one is
	if p.n > 0 {
		next = time.Now().Add(sweepEvery())
	}
	_ = p.ep.SetReadDeadline(next)
}

// stop ends parking for good (the broker shuts down) and resumes every
// parked connection. Poller.
func (p *parker) stop() {
	p.mu.Lock()
	p.closed = true
	for _, s := range p.slots {
		if s.c != nil && s.c.pk.state.Load() == stParked {
			p.ready = append(p.ready, s.c)
		}
	}
	p.mu.Unlock()
	_ = p.ep.Close()
	for _, c := range p.ready {
		c.wake()
	}
	p.ready = nil
}

// ctl changes the socket's registration with the epoll instance (with
// p.ctlEv for an add), under both descriptors' Control: neither can be
// closed (and its number reused) meanwhile; a closed one fails. p.mu
// held.
func (p *parker) ctl(c *Conn, op int) error {
	p.ctlOp, p.ctlErr = op, nil
	if err := c.raw.rc.Control(p.onSock); err != nil {
		return err
	}
	return p.ctlErr
}

func (p *parker) ctlSock(fd uintptr) {
	p.ctlFd = fd
	if err := p.eprc.Control(p.onEp); err != nil {
		p.ctlErr = err
	}
}

func (p *parker) ctlEp(ep uintptr) {
	p.ctlErr = syscall.EpollCtl(int(ep), p.ctlOp, int(p.ctlFd), &p.ctlEv)
}

// parked is Parked: how many of b's connections are parked now.
func parked(b *broker.Broker) int {
	p, _ := b.ExtensionValue(parkerKey{}).(*parker)
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parked
}
