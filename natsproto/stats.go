package natsproto

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
)

// Monitoring figures of a NATS connection (broker.ConnStatser): TCP,
// in-process and WebSocket connections alike.

var _ broker.ConnStatser = (*conn)(nil)

// connStats are the figures only the connection knows. Every field is
// atomic or set before the broker knows the connection, so ConnStats
// takes no lock but the outbound queue's (a leaf).
type connStats struct {
	start    time.Time    // set by serve before Connect
	last     atomic.Int64 // unix ns of the last read from the peer
	pingSent atomic.Int64 // unix ns of the PING awaiting its PONG; 0: none
	rtt      atomic.Int64 // ns, the last PING round trip
	client   atomic.Pointer[clientMeta]
}

// clientMeta is what CONNECT said about the client library.
type clientMeta struct{ lang, version string }

// begin marks the connection's start. serve, before Connect.
func (s *connStats) begin() {
	s.start = time.Now()
	s.last.Store(s.start.UnixNano())
}

// touch records activity from the peer. Read loop.
func (s *connStats) touch() { s.last.Store(time.Now().UnixNano()) }

// pinged records a PING sent to measure its round trip.
func (s *connStats) pinged() { s.pingSent.CompareAndSwap(0, time.Now().UnixNano()) }

// ponged takes the round trip of the PING awaiting its PONG. Read loop.
func (s *connStats) ponged() {
	if t := s.pingSent.Swap(0); t != 0 {
		s.rtt.Store(time.Now().UnixNano() - t)
	}
}

// setClient records CONNECT's lang and version. Read loop.
func (s *connStats) setClient(lang, version string) {
	s.client.Store(&clientMeta{lang: lang, version: version})
}

// ConnStats reports the connection's figures for monitoring. Any
// goroutine, b.mu possibly held: reads atomics and the outbound queue's
// leaf lock only.
func (c *conn) ConnStats() broker.ConnStats {
	st := broker.ConnStats{
		Start:        c.st.start,
		LastActivity: time.Unix(0, c.st.last.Load()),
		OutMsgs:      c.outMsgs.Load(),
		OutBytes:     c.outBytes.Load(),
		RTT:          time.Duration(c.st.rtt.Load()),
	}
	if c.out != nil {
		st.Pending = c.out.Pending()
	}
	if m := c.st.client.Load(); m != nil {
		st.Lang, st.Version = m.lang, m.version
	}
	if r := c.closeErr.Load(); r != nil {
		st.Reason = closeReason(*r)
	}
	return st
}

// closeReason names why a connection closed, in nats-server's words.
func closeReason(err error) string {
	var pe *protoError
	if !errors.As(err, &pe) {
		return broker.CloseReason(err)
	}
	switch pe {
	case errAuthViolation:
		return broker.ReasonAuthViolation
	case errAuthTimeout:
		return broker.ReasonAuthTimeout
	case errAuthExpired:
		return broker.ReasonAuthExpired
	case errStale:
		return broker.ReasonStale
	case errSlowConsumer:
		return broker.ReasonSlowConsumerPending
	case errMaxConns:
		return broker.ReasonMaxConnections
	case errMaxPayload:
		return broker.ReasonMaxPayload
	case errMaxControlLine:
		return broker.ReasonMaxControlLine
	case errBadProtocol:
		return broker.ReasonBadProtocolVersion
	case errParser, errBadConnect, errUnknownOp:
		return broker.ReasonParseError
	}
	return broker.ReasonProtocolViolation
}
