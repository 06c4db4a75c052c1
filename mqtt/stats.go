package mqtt

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// Monitoring figures of an MQTT connection (broker.ConnStatser), over TCP
// or WebSocket alike.

var (
	_ broker.ConnStatser = (*conn)(nil)
	_ broker.ConnStatser = (*session)(nil)
)

// connStats are the figures only the connection knows: atomics, or set
// before the broker knows the connection, so ConnStats takes no lock but
// the outbound queue's (a leaf).
type connStats struct {
	start             time.Time    // set by serveConn before the read loop
	last              atomic.Int64 // unix ns of the last read from the peer
	outMsgs, outBytes atomic.Int64 // PUBLISH packets queued for the peer, and their payload bytes
}

// begin marks the connection's start. serveConn.
func (s *connStats) begin() {
	s.start = time.Now()
	s.last.Store(s.start.UnixNano())
}

// touch records activity from the peer. Read loop.
func (s *connStats) touch() { s.last.Store(time.Now().UnixNano()) }

// sent counts one PUBLISH of n payload bytes queued. Any goroutine.
func (s *connStats) sent(n int) {
	s.outMsgs.Add(1)
	s.outBytes.Add(int64(n))
}

// ConnStats reports the connection's figures for monitoring. Any
// goroutine, b.mu possibly held.
func (c *conn) ConnStats() broker.ConnStats {
	st := broker.ConnStats{
		Start:        c.st.start,
		LastActivity: time.Unix(0, c.st.last.Load()),
		OutMsgs:      c.st.outMsgs.Load(),
		OutBytes:     c.st.outBytes.Load(),
		Pending:      c.out.Pending(),
	}
	if r := c.reason.Load(); r != nil {
		st.Reason = closeReason(*r)
	}
	return st
}

// ConnStats of a session kept between connections: nothing is written by
// the session itself (its connection counts what it sends), so the
// broker's totals count each message once.
func (s *session) ConnStats() broker.ConnStats { return broker.ConnStats{} }

// writerEnded runs once the outbound queue has ended: after a failed write
// the connection is closed with the reason monitoring shows (a timeout is
// a slow consumer, as nats-server counts it).
func (c *conn) writerEnded(err error) {
	if err != nil && !c.closing.Load() {
		we := &broker.WriteError{Err: err}
		if errors.Is(we, broker.ErrSlowConsumer) {
			c.srv.b.CountSlowConsumer()
		}
		c.Close(we)
	}
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && err == nil && c.linger.Load() {
		_ = cw.CloseWrite() // the read loop closes it after draining (conn.drain)
		return
	}
	_ = c.nc.Close()
}

// closeReason names why a connection closed, in nats-server's words.
func closeReason(err error) string {
	switch {
	case errors.Is(err, errDisconnected):
		return broker.ReasonClientClosed
	case errors.Is(err, packet.SessionTakenOver):
		return broker.ReasonDuplicateClientID
	case errors.Is(err, packet.ServerShuttingDown):
		return broker.ReasonServerShutdown
	case errors.Is(err, packet.KeepAliveTimeout):
		return broker.ReasonStale
	case errors.Is(err, packet.NotAuthorized), errors.Is(err, packet.BadUserOrPassword),
		errors.Is(err, packet.V311NotAuthorized), errors.Is(err, packet.V311BadUserOrPassword):
		return broker.ReasonAuthViolation
	case errors.Is(err, packet.PacketTooLarge):
		return broker.ReasonMaxPayload
	case errors.Is(err, packet.MalformedPacket):
		return broker.ReasonParseError
	case errors.Is(err, packet.ProtocolError):
		return broker.ReasonProtocolViolation
	}
	return broker.CloseReason(err)
}
