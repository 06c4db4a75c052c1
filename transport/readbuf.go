package transport

import "sync"

// Read buffer bounds, when ConnConfig leaves them zero.
const (
	DefaultReadBuf    = 512      // an idle connection's read buffer
	DefaultMaxReadBuf = 64 << 10 // the most a burst grows it to
)

// bursts are the buffers raw reads take once input arrives (rawRead),
// DefaultMaxReadBuf each, shared by every connection of every broker: a
// cache of free memory, not running state. A connection keeps one only
// while it holds input the protocol has not consumed (a packet cut by the
// read), once set up.
var bursts = sync.Pool{New: func() any { return new([DefaultMaxReadBuf]byte) }}

// setUpBuf is the size of the pooled buffer a raw read takes before the
// connection is set up: a CONNECT fits, and a storm of connections being
// set up does not take (and, as each GC empties the pool, allocate) a
// 64 KiB burst buffer per handshake in flight. What a read leaves
// unconsumed is kept by readBuf's rules, as from a burst buffer.
const setUpBuf = 4 << 10

var setUpBufs = sync.Pool{New: func() any { return new([setUpBuf]byte) }}

func getBurst() []byte { return bursts.Get().(*[DefaultMaxReadBuf]byte)[:] }

func getSetUpBuf() []byte { return setUpBufs.Get().(*[setUpBuf]byte)[:] }

// putBurst gives a pooled read buffer back: a burst buffer or a set-up one.
func putBurst(b []byte) {
	switch cap(b) {
	case DefaultMaxReadBuf:
		bursts.Put((*[DefaultMaxReadBuf]byte)(b[:DefaultMaxReadBuf]))
	case setUpBuf:
		setUpBufs.Put((*[setUpBuf]byte)(b[:setUpBuf]))
	}
}

// shrinkAfter is how many reads in a row must use less than a quarter of
// the buffer (and leave nothing unconsumed) before it is halved: a busy
// connection does not reallocate back and forth.
const shrinkAfter = 16

// readBuf is a Conn's read buffer and its one size policy, the same for
// every protocol:
//
//   - it starts at min, so an idle connection holds little;
//   - a read that fills it doubles it, up to max (a burst: fewer reads);
//   - a unit (a packet) that does not fit, its length known, gets a
//     buffer of its own size, beyond max if need be, dropped back to min
//     as soon as it is consumed;
//   - after shrinkAfter reads in a row that used less than a quarter of
//     it with nothing left over, it is halved, down to min;
//   - before the connection is set up (authenticated), it grows only as
//     bytes arrive: doubled when full, never to a declared length at once,
//     and the protocol is told its size (ConnConfig.PreSetUp).
//
// Where reads can wait without a buffer (rawRead: TCP and Unix sockets on
// Linux) a connection holds none at all while it has nothing unconsumed:
// each read takes a burst buffer from the pool and gives it back; input
// left over stays in that burst buffer once set up (keepRaw), or in one
// of its own size before, and the rules above apply until it is consumed.
//
// Read loop only.
type readBuf struct {
	b        []byte // b[:kept] is input the protocol has not consumed yet
	kept     int
	short    int32 // consecutive short reads
	min, max int32
	burst    bool // b is a pooled burst buffer
}

// free is where the next read goes, after what was kept (never empty: a
// buffer full of an unconsumed unit doubles).
func (r *readBuf) free() []byte {
	switch {
	case r.b == nil:
		r.b = make([]byte, int(r.min))
	case r.kept == len(r.b):
		r.resize(2 * len(r.b))
	}
	return r.b[r.kept:]
}

// next moves the unconsumed rest of the data (r.b[used:total]) to the
// front and resizes the buffer by the policy. read is the size of the
// last read, filled whether it filled the free space, need the length of
// the unit at the front when known (0 otherwise). It reports whether the
// size changed.
func (r *readBuf) next(total, used, read, need int, filled, setUp bool) bool {
	rest := total - used
	if used > 0 && rest > 0 {
		copy(r.b, r.b[used:total])
	}
	r.kept = rest
	size, lo, hi := len(r.b), int(r.min), int(r.max)
	grow := size
	switch {
	case need > size && setUp:
		grow = need
	case need > size:
		if rest == size { // full: only as bytes arrive
			grow = min(2*size, need)
		}
	case filled && size < hi:
		grow = min(2*size, hi)
	}
	if grow != size {
		r.resize(grow)
		return true
	}
	switch {
	case rest > 0 || filled:
		r.short = 0
	case size > hi: // sized for one large unit, consumed
		r.resize(lo)
		return true
	case read < size/4 && size > lo:
		if r.short++; r.short >= shrinkAfter {
			r.resize(size / 2)
			return true
		}
	default:
		r.short = 0
	}
	return false
}

// resize replaces the buffer by one of n bytes holding what was kept.
func (r *readBuf) resize(n int) {
	nb := make([]byte, max(n, r.kept))
	copy(nb, r.b[:r.kept])
	if r.burst {
		putBurst(r.b)
	}
	r.b, r.short, r.burst = nb, 0, false
}

// keepRaw keeps rest, the input a raw read's protocol left unconsumed at
// the end of burst (the pooled buffer it was read into, handed over):
// set up, in burst itself when the unit fits; otherwise in a buffer of its
// own, sized for the unit once set up, as the bytes that arrived before.
// It reports whether the buffer is one of its own (its size counts before
// set-up).
func (r *readBuf) keepRaw(rest []byte, need int, setUp bool, burst []byte) bool {
	if setUp && need <= len(burst) {
		r.kept = copy(burst, rest)
		r.b, r.burst, r.short = burst, true, 0
		return false
	}
	size := max(int(r.min), len(rest)+1) // room for the next read
	if setUp {
		size = max(size, need)
	} else {
		for size&(size-1) != 0 { // a power of two, as the doubling gives
			size += size & -size
		}
		if need > len(rest) {
			size = min(size, need) // never past the unit's length
		}
	}
	nb := make([]byte, size)
	r.kept = copy(nb, rest)
	putBurst(burst)
	r.b, r.burst, r.short = nb, false, 0
	return true
}

// release drops the buffer: nothing is kept and reads need none while
// waiting, or the connection ended.
func (r *readBuf) release() {
	if r.burst {
		putBurst(r.b)
	}
	r.b, r.kept, r.burst, r.short = nil, 0, false, 0
}
