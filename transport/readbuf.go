package transport

// Read buffer bounds, when ConnConfig leaves them zero.
const (
	DefaultReadBuf    = 512      // an idle connection's read buffer
	DefaultMaxReadBuf = 64 << 10 // the most a burst grows it to
)

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
// Read loop only.
type readBuf struct {
	b        []byte // b[:kept] is input the protocol has not consumed yet
	kept     int
	short    int32 // consecutive short reads
	min, max int32
}

// free is where the next read goes, after what was kept.
func (r *readBuf) free() []byte {
	if r.b == nil {
		r.b = make([]byte, int(r.min))
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
	r.b, r.short = nb, 0
}

// release drops the buffer (the connection ended).
func (r *readBuf) release() { r.b, r.kept = nil, 0 }
