package mqtt

import (
	"time"

	"github.com/busbar/busbar/broker"
)

// Bounds on what a client can make the broker hold, and what is dropped
// past them (issue 16). Everything here is accounted in the broker's own
// figures (Stats), so tests and monitoring see the bounds hold:
//
//   - before CONNECT, a connection's read buffer grows only as bytes
//     arrive, up to the CONNECT's declared length, which may not pass
//     ConnectLimit (64 KiB plus a will payload of up to max_payload, at
//     most 64 KiB); all such buffers together may not pass
//     preConnectBudget (PreConnectBytes);
//   - after it, packets are bounded by PacketLimit, payloads by
//     max_payload, topic aliases by MaxTopicAlias and MaxAliasBytes
//     (AliasBytes);
//   - a session's QoS 1/2 messages by MaxQueuedBytes and its queue by
//     MaxQueuedMessages (QueuedBytes), the sessions without a connection
//     together by MaxOfflineBytes (OfflineBytes). Past a bound the new
//     message is dropped: the ones already held are older and were
//     accepted first, and a client that reconnects gets them in order.

// dropReason says why a message for a session was dropped.
type dropReason uint8

// Why messages are dropped (Stats.DroppedBy, the reason label of
// busbar_mqtt_dropped_messages_total).
const (
	DropOffline       = "offline"        // QoS 0 for a session with no connection
	DropQueueMessages = "queue_messages" // the session's queue holds MaxQueuedMessages
	DropQueueBytes    = "queue_bytes"    // the session holds MaxQueuedBytes
	DropOfflineBytes  = "offline_bytes"  // sessions without a connection hold MaxOfflineBytes
	DropExpired       = "expired"        // its Message Expiry passed while it waited
	DropTooLarge      = "too_large"      // over the client's Maximum Packet Size (5.0)
)

const (
	dropOffline dropReason = iota
	dropQueueMessages
	dropQueueBytes
	dropOfflineBytes
	dropExpired
	dropTooLarge
	numDrops
)

var dropNames = [numDrops]string{DropOffline, DropQueueMessages, DropQueueBytes, DropOfflineBytes, DropExpired, DropTooLarge}

// dropWhy is the Warn line of each reason.
var dropWhy = [numDrops]string{
	"mqtt: dropping QoS 0 messages for sessions without a connection",
	"mqtt: dropping messages: a session's queue is full (max_queued_messages)",
	"mqtt: dropping messages: a session holds max_queued_bytes",
	"mqtt: dropping messages: sessions without a connection hold max_offline_bytes",
	"mqtt: dropping messages whose expiry passed while they waited",
	"mqtt: dropping messages larger than the client's Maximum Packet Size",
}

func (r dropReason) String() string { return dropNames[r] }

// dropLogEvery is how often one reason is logged (the broker's limiter
// would allow it per source; this keeps the call off the publish path).
const dropLogEvery = broker.LogRepeatInterval

// dropped counts a message dropped for s and logs the reason at Warn, at
// most once per dropLogEvery. Any goroutine; s.mu may be held.
func (srv *server) dropped(r dropReason, s *session) {
	n := srv.drops[r].Add(1)
	now := time.Now().UnixNano()
	next := srv.dropLog[r].Load()
	if now < next || !srv.dropLog[r].CompareAndSwap(next, now+int64(dropLogEvery)) {
		return
	}
	srv.b.Logger().Warn(dropWhy[r], "reason", r.String(), "client_id", s.id, "dropped_total", n)
}

// outMsgOverhead is what an outMsg costs besides its bytes (the struct,
// its queue slot), for MaxQueuedBytes.
const outMsgOverhead = 192

// msgSize is what holding m in a session costs.
func msgSize(m *broker.Message) int64 {
	n := int64(len(m.Subject)+len(m.Payload)) + outMsgOverhead
	if x, ok := m.Ext.(*msgExt); ok {
		n += int64(x.size)
	}
	return n
}

// overLimit says whether a message of size bytes may not be held by s
// (and why). sendNow: it goes out at once rather than into the queue.
// s.mu held.
func (s *session) overLimit(size int64, sendNow bool) (dropReason, bool) {
	o := &s.srv.opts
	switch {
	case !sendNow && o.MaxQueuedMessages > 0 && len(s.queue) >= o.MaxQueuedMessages:
		return dropQueueMessages, true
	case o.MaxQueuedBytes > 0 && s.qBytes+size > o.MaxQueuedBytes:
		return dropQueueBytes, true
	case s.conn == nil && o.MaxOfflineBytes > 0 && s.srv.offline.Load()+size > o.MaxOfflineBytes:
		return dropOfflineBytes, true
	}
	return 0, false
}

// hold counts om against the session (and the offline total when it has
// no connection); unhold when it leaves. s.mu held.
func (s *session) hold(om *outMsg) {
	om.bytes = msgSize(&om.m)
	s.qBytes += om.bytes
	if s.conn == nil {
		s.srv.offline.Add(om.bytes)
	}
}

func (s *session) unhold(om *outMsg) {
	s.qBytes -= om.bytes
	if s.conn == nil {
		s.srv.offline.Add(-om.bytes)
	}
	om.bytes = 0
}

// setConnLocked attaches c (nil: detaches), moving the session's bytes in
// or out of the offline total. s.mu held.
func (s *session) setConnLocked(c *conn) {
	switch {
	case s.conn == nil && c != nil:
		s.srv.offline.Add(-s.qBytes)
	case s.conn != nil && c == nil:
		s.srv.offline.Add(s.qBytes)
	}
	s.conn = c
}

// releaseAllLocked forgets every outbound message (the session ends or
// leaves this broker). s.mu held.
func (s *session) releaseAllLocked() {
	if s.conn == nil {
		s.srv.offline.Add(-s.qBytes)
	}
	s.qBytes = 0
	s.inflight, s.queue = nil, nil
}

// preConnectBudget bounds the read buffers of every connection that has
// not completed CONNECT, together: a connection whose buffer would grow
// past idleReadBuf while they hold more is closed (smaller CONNECTs always
// get in, so a few slow large ones cannot lock every client out).
func (srv *server) preConnectBudget() int64 {
	if srv.opts.preBudget > 0 {
		return srv.opts.preBudget
	}
	return 64 << 20
}
