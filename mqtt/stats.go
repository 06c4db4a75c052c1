package mqtt

import (
	"errors"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// Monitoring figures of an MQTT connection (broker.ConnStatser), over TCP
// or WebSocket alike.

var (
	_ broker.ConnStatser = (*conn)(nil)
	_ broker.ConnStatser = (*session)(nil)
)

// ConnStats reports the connection's figures for monitoring: its
// transport.Conn's (PUBLISH packets queued for the peer and their payload
// bytes as out messages), with the close reason in nats-server's words.
// Any goroutine, b.mu possibly held.
func (c *conn) ConnStats() broker.ConnStats {
	st := c.tc.Stats()
	if r := c.tc.Reason(); r != nil {
		st.Reason = closeReason(r)
	}
	return st
}

// ConnStats of a session kept between connections: nothing is written by
// the session itself (its connection counts what it sends), so the
// broker's totals count each message once.
func (s *session) ConnStats() broker.ConnStats { return broker.ConnStats{} }

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
