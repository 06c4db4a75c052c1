package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/transport"
)

const pubrelType = packet.Pubrel

// conn is one MQTT network connection: the protocol on a transport.Conn
// (read loop, read buffer, outbound queue and writer, close-once, figures).
type conn struct {
	tc   transport.Conn
	srv  *server
	nc   net.Conn            // the socket (tc's): addresses, TLS state
	out  *transport.Outbound // tc.Out()
	ct   auth.ConnType
	sess *session
	bs   *broker.Session // this connection as a publisher (permissions, counters)

	// Read loop state.
	v           packet.Version
	dec         *packet.Decoder // from decoders, held for one read's packets
	batch       broker.Batch
	msg         *broker.Message // the PUBLISH being routed, reused
	connectRead int64           // when the read that brought CONNECT returned (Unix ns; recent.go)
	unsubAt     int64           // when the last UNSUBSCRIBE removed a subscription (Unix ns; recent.go)
	recent      *recentLog      // the account's recent publishes, once used
	subj        []byte
	keepAlive   time.Duration
	aliases     map[uint16][]byte // topic aliases the client set (5.0), this connection only [MQTT-3.3.2-7]
	aliasMax    int               // the server's Topic Alias Maximum
	aliasBytes  atomic.Int64      // what aliases hold (MaxAliasBytes; Stats, from any goroutine)
	maxPacket   int               // PacketLimit when the connection started
	maxConnect  int               // ConnectLimit when the connection started
	maxPayload  int               // the broker's max_payload when the connection started
	want        int               // length of the packet at the front of the read buffer, once known
	preBytes    int64             // read buffer counted in srv.preBytes (before CONNECT)
	counted     bool              // counted in srv.conns (MaxConnections)
	endedStored bool              // CONNECT ended a stored session (clean start): CONNACK waits for its deletion
	inRecv      int               // QoS 2 receptions awaiting PUBREL (server receive maximum)
	pubacksRead int               // PUBACKs in acks (read loop)
	pubacksOwed atomic.Int32      // PUBACKs waiting for a commit: unacknowledged QoS 1 PUBLISHes (server receive maximum)
	noProblem   bool              // 5.0 Request Problem Information 0: Reason Strings on CONNACK and DISCONNECT only (reason.go)
	normal      bool              // DISCONNECT received: no will (unless 5.0 0x04)
	sendWill    bool
	clientMax   int                        // the client's Maximum Packet Size (5.0); 0: none
	clientRecv  int                        // the client's Receive Maximum (5.0)
	aliasOut    *aliasOut                  // topic aliases the server sends (5.0, alias_out.go); the Outbound lock guards it
	topic, hdr  []byte                     // PUBLISH scratch; the session's lock held
	takenOver   atomic.Bool                // another connection took the session: no will from this one
	ackTimer    atomic.Pointer[time.Timer] // 3.1.1 ack_wait redelivery, made when first needed
	ackWait     time.Duration              // 3.1.1: ack_wait; 0: no redelivery; the session's lock
	ackArmed    bool                       // ackTimer runs; the session's lock
	pre         *transport.ConnOptions     // a WebSocket connection: its upgrade request, and the identity its handshake established
	accepted    atomic.Bool                // a CONNACK accepting the connection was queued
	onEnd       func()                     // ConnOptions.OnEnd, run by Ended
	grouped     store.Grouped              // the broker's Store when it group-commits
	acks        []byte                     // acknowledgements waiting for this read's commit
}

var (
	_ broker.Client     = (*conn)(nil)
	_ transport.Handler = (*conn)(nil)
)

// serveConn runs one MQTT connection until it ends (or, with handoff,
// until CONNECT is done: the read loop goes on on a fresh goroutine).
func (srv *server) serveConn(nc net.Conn, ct auth.ConnType, handoff bool, pre *transport.ConnOptions) {
	opts := srv.b.Options()
	mp := opts.MaxPayload
	c := &conn{srv: srv, nc: nc, ct: ct, aliasMax: max(srv.opts.MaxTopicAlias, 0),
		maxPacket: PacketLimit(srv.opts, mp), maxConnect: ConnectLimit(srv.opts, mp), maxPayload: mp}
	c.grouped, _ = srv.b.Store().(store.Grouped)
	if pre != nil {
		c.pre, c.onEnd = pre, pre.OnEnd
	}
	c.tc.Init(srv.b, nc, c, transport.ConnConfig{
		MaxPending: opts.MaxPending, WriteDeadline: opts.WriteDeadline,
		ReadBuf: minReadBuf, MaxReadBuf: maxReadBuf, PreSetUp: c.countPre,
	})
	c.out = c.tc.Out()
	c.tc.Start(nc)
	_ = c.countPre(minReadBuf)
	c.tc.SetReadDeadline(time.Now().Add(opts.AuthTimeout * 5))
	_ = c.tc.Serve(handoff)
}

// window is how many QoS 1/2 messages may be in flight to the client:
// its Receive Maximum (5.0) and max_ack_pending, whichever is smaller.
func (c *conn) window() int {
	w := c.srv.opts.MaxAckPending
	if c.clientRecv > 0 && c.clientRecv < w {
		w = c.clientRecv
	}
	return w
}

// decoders lends a Decoder (a few KiB of reusable packet structs) to a
// connection for one read's packets, so idle connections hold none. A
// cache of free memory shared by all brokers, not running state.
var decoders = sync.Pool{New: func() any { return new(packet.Decoder) }}

// Read buffer sizes (transport.Conn's policy): small while idle, growing
// to hold a whole packet; past idleReadBuf an unauthenticated connection's
// buffer counts against the budget (countPre).
const (
	minReadBuf  = 128
	idleReadBuf = 4096
	maxReadBuf  = 64 << 10 // for bursts of small packets; a larger packet gets its own size
)

// Received handles every whole packet read (transport.Handler): the
// rest, a packet cut by the read, stays in the buffer, which grows to its
// length. Then the publishes are flushed, the acknowledgements handed to
// the store, and what the packets queued written. Read loop.
func (c *conn) Received(b []byte) (int, int, error) {
	if !c.tc.IsSetUp() {
		c.connectRead = c.tc.LastRead() // the read that brings CONNECT (recent.go)
	}
	c.dec = decoders.Get().(*packet.Decoder)
	used, err := c.packets(b)
	decoders.Put(c.dec)
	c.dec = nil
	c.batch.Flush()
	c.flushAcks()
	c.out.Wake() // what this read's packets queued (acks, resends, retained)
	if c.keepAlive > 0 {
		c.tc.SetReadTimeout(c.keepAlive * 3 / 2)
	}
	return used, c.want, err
}

// countPre sets the read buffer counted against the broker's pre-CONNECT
// budget (0 once CONNECT is done or the connection ends); over the
// budget is an error (transport.ConnConfig.PreSetUp). Read loop.
func (c *conn) countPre(size int) error {
	n := int64(size)
	d := n - c.preBytes
	c.preBytes = n
	if total := c.srv.preBytes.Add(d); d > 0 && n > idleReadBuf && total > c.srv.preConnectBudget() {
		return errPreConnectFull
	}
	return nil
}

// packets handles every whole packet at the start of buf and returns how
// many bytes they took. The first packet must be CONNECT, which its first
// byte shows ([MQTT-3.1.0-1]): anything else closes the connection before
// more is read.
func (c *conn) packets(buf []byte) (int, error) {
	off := 0
	c.want = 0
	for off < len(buf) {
		connected := c.tc.IsSetUp()
		limit := c.maxPacket
		if !connected {
			if packet.Type(buf[off]>>4) != packet.Connect {
				return off, errFirstNotConnect
			}
			limit = c.maxConnect
		}
		n, err := packet.Size(buf[off:], limit)
		if err != nil {
			return off, err
		}
		if n == 0 || n > len(buf)-off {
			c.want = n
			break
		}
		raw := buf[off : off+n]
		off += n
		if !connected {
			if err := c.onConnect(raw); err != nil {
				return off, err
			}
			c.tc.SetUp() // the read loop hands off after this read; countPre(0)
			continue
		}
		if err := c.handle(raw); err != nil {
			return off, err
		}
	}
	return off, nil
}

// sendPublish writes a PUBLISH for m. Publisher's goroutine or read
// loop, with the session's lock held (it guards the scratch buffers).
func (c *conn) sendPublish(m *broker.Message, qos byte, id uint16, retain, dup bool, subIDs []uint32) bool {
	return c.writePublish(m, qos, id, retain, dup, subIDs, &c.topic, &c.hdr)
}

// sendPublishNoScratch is sendPublish from any goroutine without the
// session's lock (its own buffers: a store commit callback).
func (c *conn) sendPublishNoScratch(m *broker.Message, qos byte, id uint16, retain, dup bool, subIDs []uint32) bool {
	var topic, hdr []byte
	return c.writePublish(m, qos, id, retain, dup, subIDs, &topic, &hdr)
}

func (c *conn) writePublish(m *broker.Message, qos byte, id uint16, retain, dup bool, subIDs []uint32, topic, hdr *[]byte) bool {
	var pp packet.PublishPacket
	pp.QoS, pp.PacketID, pp.Retain, pp.Dup = qos, id, retain, dup
	*topic = SubjectToTopic((*topic)[:0], m.Subject)
	pp.Topic = *topic
	pp.Payload = m.Payload
	if c.v == packet.V5 {
		if x := extOf(m); x != nil {
			pp.Props = x.props
			if x.expires != 0 {
				left, ok := x.left(time.Now())
				if !ok {
					c.srv.dropped(dropExpired, c.sess)
					return true
				}
				pp.Props.SetMessageExpiry(left) // the time left [MQTT-3.3.2-6]
			}
		}
		pp.Props.SubscriptionIDs = subIDs // every matching subscription's [MQTT-3.3.4-3/-4]; only read
	}
	var h uint64
	if c.aliasOut != nil {
		h = c.aliasOut.hash(pp.Topic)
	}
	o := c.out
	o.Lock()
	if o.ClosedLocked() {
		o.Unlock()
		return true
	}
	var alias uint16
	var known bool
	if a := c.aliasOut; a != nil {
		if alias, known = a.find(pp.Topic, h); alias != 0 {
			pp.Props.SetTopicAlias(alias)
			if known {
				pp.Topic = pp.Topic[:0] // the alias alone [MQTT-3.3.2-12]
			}
		}
	}
	*hdr = packet.AppendPublishHeader((*hdr)[:0], c.v, &pp)
	if c.clientMax > 0 && len(*hdr)+len(pp.Payload) > c.clientMax {
		o.Unlock()
		c.srv.dropped(dropTooLarge, c.sess)
		return true // too large for the client: dropped, acting as sent [MQTT-3.1.2-25]
	}
	if alias != 0 {
		c.aliasOut.use(alias, known, *topic, h)
	}
	o.AppendLocked(*hdr)
	o.AppendPayloadLocked(m) // pp.Payload, by reference when large and shared
	over := o.OverLocked()
	o.Unlock()
	c.tc.CountOut(len(pp.Payload))
	return !over
}

// tooLarge reports whether om, sent now, would pass the client's Maximum
// Packet Size (5.0). s.mu held (the topic scratch).
func (c *conn) tooLarge(om *outMsg) bool {
	if c.clientMax == 0 {
		return false
	}
	var pp packet.PublishPacket
	pp.QoS = om.qos
	c.topic = SubjectToTopic(c.topic[:0], om.m.Subject)
	pp.Topic, pp.Payload = c.topic, om.m.Payload
	if c.v == packet.V5 {
		if x := extOf(&om.m); x != nil {
			pp.Props = x.props
			if x.expires != 0 {
				pp.Props.SetMessageExpiry(1)
			}
		}
		pp.Props.SubscriptionIDs = om.subIDs
	}
	return packet.PublishSize(c.v, &pp) > c.clientMax
}

// sendAck writes a PUBACK, PUBREC, PUBREL or PUBCOMP.
func (c *conn) sendAck(t packet.Type, id uint16, code packet.Code) { c.sendAckWhy(t, id, code, "") }

// sendAckWhy is sendAck with a Reason String (5.0, reason.go; "": none).
func (c *conn) sendAckWhy(t packet.Type, id uint16, code packet.Code, reason string) {
	if c.grouped != nil && (t == packet.Puback || t == packet.Pubrec || t == packet.Pubrel || t == packet.Pubcomp) {
		// Acknowledged only once what the packet changed is on disk:
		// sent by flushAcks after the commit that covers it.
		if t == packet.Puback {
			c.pubacksRead++
			c.pubacksOwed.Add(1)
		}
		c.acks = c.appendAck(c.acks, t, id, code, reason)
		return
	}
	var buf [16]byte // 4 bytes in 3.1.1 and in 5.0 without properties
	c.write(c.appendAck(buf[:0], t, id, code, reason))
}

// flushAcks hands this read's acknowledgements to the store, to be sent
// once everything they acknowledge is durable (group commit: one fsync
// for the whole read, and for other connections' reads meanwhile).
// Callbacks run in order, so PUBACKs keep the PUBLISH order
// [MQTT-4.6.0-2]. Read loop.
func (c *conn) flushAcks() {
	if len(c.acks) == 0 {
		return
	}
	acks, pubacks := c.acks, int32(c.pubacksRead)
	c.acks, c.pubacksRead = nil, 0
	c.grouped.Durable(func(err error) {
		if err != nil {
			c.Close(fmt.Errorf("%w: store: %w", packet.UnspecifiedError, err))
			return
		}
		c.pubacksOwed.Add(-pubacks) // before the client can see them
		c.out.Write(acks)
		c.out.Wake()
	})
}

func (c *conn) write(b []byte) { c.out.Write(b) }

// Deliver is only used for the connection as a publisher (no
// subscriptions are made on it); see session.Deliver.
func (c *conn) Deliver(*broker.Subscription, *broker.Message) bool { return true }

// Wake flushes the writer.
func (c *conn) Wake() { c.out.Wake() }

// Close ends the connection from any goroutine (transport.Conn.Close:
// the first reason wins); Closing tells a 5.0 client why.
func (c *conn) Close(reason error) {
	if c.tc.Closing() {
		return
	}
	c.tc.Close(reloadReason(shutdownReason(reason))) // lameduck.go, reason.go
}

// Closing tells the client why the connection closes: a WebSocket close
// code, and for a 5.0 client a DISCONNECT when the reason carries a code
// (never before a successful CONNACK [MQTT-3.14.0-1]). A slow consumer's
// queue is dropped after it. transport.Conn.Close, once.
func (c *conn) Closing(reason error) {
	var code packet.Code
	if !errors.As(reason, &code) || code < 0x80 {
		return
	}
	transport.SetCloseStatus(c.nc, wsCloseCode(code), code.Error())
	if c.v == packet.V5 && c.accepted.Load() {
		c.write(c.disconnect(code, reason))
	}
}

// wsCloseCode is the WebSocket close code for an MQTT reason code (MQTT
// over WebSocket).
func wsCloseCode(code packet.Code) int {
	switch code {
	case packet.MalformedPacket, packet.ProtocolError:
		return transport.CloseProtocolError
	case packet.PacketTooLarge:
		return transport.CloseMessageTooBig
	case packet.ServerShuttingDown:
		return transport.CloseGoingAway
	}
	return transport.ClosePolicyViolation
}

// Ended runs when the read loop stopped (transport.Handler): tell the
// client why (5.0), send the will unless the client disconnected
// normally, detach the session. Read loop.
func (c *conn) Ended(err error) {
	if c.onEnd != nil {
		defer c.onEnd()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && c.tc.IsSetUp() {
		err = errKeepAlive
	}
	c.logEnd(err)
	linger := false
	if err != nil {
		if errors.Is(err, broker.ErrServerShutdown) {
			err = fmt.Errorf("%w: %w", packet.ServerShuttingDown, err)
		}
		linger = c.lingerAfter(err)
		c.tc.SetLinger(linger)
	}
	c.Close(err)
	if t := c.ackTimer.Load(); t != nil {
		t.Stop()
	}
	if s := c.sess; s != nil {
		if (!c.normal || c.sendWill) && !c.takenOver.Load() && !c.revoked() {
			c.srv.fireWill(s)
		}
		s.detach(c)
	}
	if c.bs != nil { // also when CONNECT was refused after the broker knew it
		c.bs.Close()
	}
	// What the connection held goes with it, in the accounting too.
	_ = c.countPre(0)
	c.aliases = nil
	c.aliasBytes.Store(0)
	if c.counted {
		c.srv.conns.Add(-1)
	}
	if linger {
		// The writer half-closes after the DISCONNECT; discard the
		// client's input until it closes, for a second and 16 MiB at
		// most, then close the socket.
		c.tc.Drain(time.Second, 16<<20)
	}
}

// lingerAfter decides whether the connection, ending with err, closes
// gently: a 5.0 client that sent a packet over the limit (DISCONNECT
// 0x95) has more of it on the way, one past the Receive Maximum (0x93)
// answers the PUBRECs it reads with PUBRELs, and closing the socket on
// unread input would reset the connection, losing the DISCONNECT. Then
// the writer half-closes after it and Ended drains what is left. Read
// loop.
func (c *conn) lingerAfter(err error) bool {
	_, ok := c.nc.(interface{ CloseWrite() error })
	return ok && c.v == packet.V5 && c.accepted.Load() &&
		(errors.Is(err, packet.PacketTooLarge) || errors.Is(err, packet.ReceiveMaxExceeded))
}

// revoked: the connection was closed because a reload no longer
// authorizes its identity (no will then).
func (c *conn) revoked() bool {
	r := c.tc.Reason()
	return r != nil && revoked(r)
}

// newClientID makes an identifier for a client that sent none
// ([MQTT-3.1.3-6]).
func newClientID() string {
	var raw [8]byte
	_, _ = rand.Read(raw[:])
	return "busbar-" + hex.EncodeToString(raw[:])
}

// fireWill sends the session's will now, or after its delay (5.0).
func (srv *server) fireWill(s *session) {
	s.mu.Lock()
	w := s.will
	if w == nil {
		s.mu.Unlock()
		return
	}
	if w.delay > 0 {
		w.timer = time.AfterFunc(w.delay, func() {
			s.mu.Lock()
			if s.will != w {
				s.mu.Unlock()
				return
			}
			s.will = nil
			s.mu.Unlock()
			srv.publishWill(s, w)
		})
		s.mu.Unlock()
		return
	}
	s.will = nil
	s.mu.Unlock()
	srv.publishWill(s, w)
}
