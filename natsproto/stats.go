package natsproto

import (
	"errors"

	"github.com/busbar/busbar/broker"
)

// Monitoring figures of a NATS connection (broker.ConnStatser): TCP,
// in-process and WebSocket connections alike.

var _ broker.ConnStatser = (*conn)(nil)

// clientMeta is what CONNECT said about the client library.
type clientMeta struct{ lang, version string }

// ConnStats reports the connection's figures for monitoring: the
// transport.Conn's, with CONNECT's lang and version and the close reason
// in nats-server's words. Any goroutine, b.mu possibly held: reads
// atomics and the outbound queue's leaf lock only.
func (c *conn) ConnStats() broker.ConnStats {
	st := c.tc.Stats()
	if m := c.client.Load(); m != nil {
		st.Lang, st.Version = m.lang, m.version
	}
	if r := c.tc.Reason(); r != nil {
		st.Reason = closeReason(r)
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
