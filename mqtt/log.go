package mqtt

import (
	"errors"
	"io"
	"log/slog"
	"net"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
)

// log is the connection's logger: its broker session's (id, transport,
// remote, user) once CONNECT registered it, the remote address before.
// Read loop only; not for per-message paths.
func (c *conn) log() *slog.Logger {
	if c.bs != nil {
		return c.bs.Log()
	}
	return c.srv.b.Logger().With("transport", "mqtt", "remote", c.nc.RemoteAddr().String())
}

// logEnd writes why the connection ended: a client breaking the protocol
// at Warn (rate-limited per remote host by the broker's logger), every
// other ending at Debug.
func (c *conn) logEnd(err error) {
	var code packet.Code
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, broker.ErrServerShutdown):
		c.log().Debug("mqtt: connection ended", "reason", err)
	case errors.As(err, &code) && (code == packet.MalformedPacket || code == packet.ProtocolError ||
		code == packet.PacketTooLarge || code == packet.TopicNameInvalid || code == packet.ReceiveMaxExceeded || code == packet.TopicAliasInvalid):
		c.log().Warn("mqtt: closing a connection that broke the protocol", "reason", err)
	default:
		c.log().Debug("mqtt: connection ended", "reason", err)
	}
}
