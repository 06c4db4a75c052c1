package transport

import (
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// DefaultParkAfter is how long a set-up connection goes without input
// before it parks, unless SetParkAfter says otherwise.
const DefaultParkAfter = 3 * time.Second

// parkAfter is the idle time before a connection parks, in ns (0: the
// default). Process-wide: a tuning value, not running state.
var parkAfter atomic.Int64

// SetParkAfter sets how long a set-up connection must go without input
// before its read loop parks (Linux TCP and Unix sockets: the connection
// keeps no goroutine until input arrives), for every broker in the
// process, and returns the previous value. d <= 0 restores
// DefaultParkAfter. Tests lower it; a busy server may raise it so that
// connections with gaps of a few seconds between messages are not parked
// and resumed each time. Any goroutine; brokers pick it up at their next
// sweep.
func SetParkAfter(d time.Duration) time.Duration {
	if d <= 0 {
		d = 0
	}
	old := time.Duration(parkAfter.Swap(int64(d)))
	if old == 0 {
		old = DefaultParkAfter
	}
	return old
}

// ParkAfter is the idle time before a connection parks (SetParkAfter).
func ParkAfter() time.Duration {
	if d := time.Duration(parkAfter.Load()); d > 0 {
		return d
	}
	return DefaultParkAfter
}

// parkVerdict is what the read loop does after a read that timed out
// (Conn.parkTimeout).
type parkVerdict int

const (
	endRead   parkVerdict = iota // a real deadline passed: the loop ends with the error
	readOn                       // a park request, but not idle (or cannot park): read again
	parkedNow                    // parked: the goroutine exits
)

// Parked is how many of b's connections are parked now: set up, idle, and
// waiting for input with no goroutine (Linux; 0 elsewhere). Any goroutine.
func Parked(b *broker.Broker) int { return parked(b) }
