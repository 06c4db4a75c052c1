package natsproto

import "github.com/busbar/busbar/broker"

var _ broker.LameDuckNotifier = (*conn)(nil)

// NotifyLameDuck queues an INFO with "ldm":true and the connection's
// usual INFO fields, as nats-server does on entering lame duck mode
// (nats.go then calls its LameDuckModeHandler). Like nats-server, it is
// only sent to a client that takes INFO updates: one that sent CONNECT
// with protocol 1 and has had its first PONG, so the notice never lands
// in the middle of its connect handshake. Any goroutine; never blocks.
func (c *conn) NotifyLameDuck() {
	if c.tc.Closing() || !c.asyncInfo.Load() {
		return
	}
	in := c.t.infoDoc(c)
	in.LameDuck = true
	in.ConnectURLs = nil // this server is leaving: do not advertise it
	c.out.Write(marshalInfo(in))
}

// pong queues PONG. The first one after a CONNECT with protocol 1 also
// allows INFO updates: set under the queue's lock, so an update can only
// be queued after that PONG, and is allowed before the client can read
// it. Read loop.
func (c *conn) pong() {
	o := c.out
	o.Lock()
	if !o.ClosedLocked() {
		o.AppendLocked(pongLine)
		if c.connected && c.proto >= 1 {
			c.asyncInfo.Store(true)
		}
	}
	o.Unlock()
	o.Wake()
}
