package natsproto

import "log/slog"

// log is the connection's logger: its session's (id, transport, remote,
// user) once the broker knows it, the transport and remote before.
// Any goroutine; not for per-message paths.
func (c *conn) log() *slog.Logger {
	if s := c.sessp.Load(); s != nil {
		return s.Log()
	}
	return c.b.Logger().With("transport", c.t.Name(), "remote", c.tc.NetConn().RemoteAddr().String())
}
