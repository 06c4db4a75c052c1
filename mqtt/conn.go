package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

// conn is one MQTT network connection: a read loop (the goroutine running
// serveConn) and a writer that runs while there is something to write.
type conn struct {
	srv  *server
	nc   net.Conn
	out  *transport.Outbound
	ct   auth.ConnType
	sess *session
	bs   *broker.Session // this connection as a publisher (permissions, counters)

	// Read loop state.
	v           packet.Version
	dec         *packet.Decoder // from decoders, held for one read's packets
	batch       broker.Batch
	msg         broker.Message
	connectRead int64      // when the read that brought CONNECT returned (Unix ns; recent.go)
	unsubAt     int64      // when the last UNSUBSCRIBE removed a subscription (Unix ns; recent.go)
	recent      *recentLog // the account's recent publishes, once used
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
	clientMax   int       // the client's Maximum Packet Size (5.0); 0: none
	clientRecv  int       // the client's Receive Maximum (5.0)
	aliasOut    *aliasOut // topic aliases the server sends (5.0, alias_out.go); the Outbound lock guards it
	topic, hdr  []byte    // PUBLISH scratch; the session's lock held
	rbuf        []byte    // unconsumed input, kept across a read-loop handoff
	connected   bool
	closing     atomic.Bool
	takenOver   atomic.Bool                // another connection took the session: no will from this one
	linger      atomic.Bool                // close gently (lingerAfter)
	ackTimer    atomic.Pointer[time.Timer] // 3.1.1 ack_wait redelivery
	reason      atomic.Pointer[error]
	pre         *transport.ConnOptions // a WebSocket connection: its upgrade request, and the identity its handshake established
	accepted    atomic.Bool            // a CONNACK accepting the connection was queued
	onEnd       func()                 // ConnOptions.OnEnd, run by end
	grouped     store.Grouped          // the broker's Store when it group-commits
	acks        []byte                 // acknowledgements waiting for this read's commit
	st          connStats              // monitoring (stats.go)
}

var _ broker.Client = (*conn)(nil)

// serveConn runs one MQTT connection until it ends.
func (srv *server) serveConn(nc net.Conn, ct auth.ConnType, handoff bool, pre *transport.ConnOptions) {
	mp := srv.b.Options().MaxPayload
	c := &conn{srv: srv, nc: nc, ct: ct, aliasMax: max(srv.opts.MaxTopicAlias, 0),
		maxPacket: PacketLimit(srv.opts, mp), maxConnect: ConnectLimit(srv.opts, mp), maxPayload: mp}
	c.grouped, _ = srv.b.Store().(store.Grouped)
	if pre != nil {
		c.pre, c.onEnd = pre, pre.OnEnd
	}
	c.st.begin()
	c.out = transport.NewOutbound(srv.b.Options().MaxPending)
	c.out.Start(transport.ConnSink(nc), nc.SetWriteDeadline, srv.b.Options().WriteDeadline, srv.b.Go, c.writerEnded)
	c.rbuf = make([]byte, 0, minReadBuf)
	_ = c.countPre(minReadBuf)
	_ = nc.SetReadDeadline(time.Now().Add(srv.b.Options().AuthTimeout * 5))
	err := c.readLoop(handoff)
	if err == errHandoff {
		// CONNECT (authentication, session set-up) grew this goroutine's
		// stack: go on reading on a fresh one, so idle connections stay small.
		srv.b.Go(func() { c.end(c.readLoop(false)) })
		return
	}
	c.end(err)
}

var errHandoff = errors.New("mqtt: continue the read loop on a new goroutine")

// window is how many QoS 1/2 messages may be in flight to the client:
// its Receive Maximum (5.0) and max_ack_pending, whichever is smaller.
func (c *conn) window() int {
	w := c.srv.opts.MaxAckPending
	if c.clientRecv > 0 && c.clientRecv < w {
		w = c.clientRecv
	}
	return w
}

// errors that end a connection, with the 5.0 reason code sent in a
// DISCONNECT when the version allows.
var (
	errFirstNotConnect = fmt.Errorf("%w: first packet is not CONNECT [MQTT-3.1.0-1]", packet.ProtocolError)
	errSecondConnect   = fmt.Errorf("%w: second CONNECT [MQTT-3.1.0-2]", packet.ProtocolError)
	errKeepAlive       = fmt.Errorf("%w: no packet within 1.5 times the keep alive [MQTT-3.1.2-24]", packet.KeepAliveTimeout)
	errPreConnectFull  = fmt.Errorf("%w: connections that have not completed CONNECT hold the broker's budget for them", packet.ServerBusy)
)

// decoders lends a Decoder (a few KiB of reusable packet structs) to a
// connection for one read's packets, so idle connections hold none. A
// cache of free memory shared by all brokers, not running state.
var decoders = sync.Pool{New: func() any { return new(packet.Decoder) }}

// Read buffer sizes: small while idle, growing to hold a whole packet.
const (
	minReadBuf  = 128
	idleReadBuf = 4096
	maxReadBuf  = 64 << 10 // for bursts of small packets; a larger packet gets its own size
)

// readLoop reads and handles packets until the connection ends. With
// handoff it returns errHandoff after the read that completed CONNECT.
func (c *conn) readLoop(handoff bool) error {
	buf, connected := c.rbuf, c.connected
	defer func() { c.rbuf, c.connected = buf, connected }()
	filled := false // the last read filled the buffer: a burst
	for {
		if err := c.grow(&buf, connected, filled); err != nil {
			return err
		}
		space := cap(buf) - len(buf)
		n, err := c.nc.Read(buf[len(buf):cap(buf)])
		filled = n == space
		if n > 0 {
			c.st.touch()
			if !connected {
				c.connectRead = c.st.last.Load() // the read that brings CONNECT (recent.go)
			}
			buf = buf[:len(buf)+n]
			var perr error
			c.dec = decoders.Get().(*packet.Decoder)
			buf, connected, perr = c.packets(buf, connected)
			decoders.Put(c.dec)
			c.dec = nil
			c.batch.Flush()
			c.flushAcks()
			c.out.Wake() // what this read's packets queued (acks, resends, retained)
			if perr != nil {
				return perr
			}
			if len(buf) == 0 && cap(buf) > idleReadBuf && !filled {
				buf = make([]byte, 0, minReadBuf) // a burst has passed
				if !connected {
					_ = c.countPre(minReadBuf)
				}
			}
			if c.keepAlive > 0 {
				_ = c.nc.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
			} else if connected {
				_ = c.nc.SetReadDeadline(time.Time{})
			}
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && connected {
				return errKeepAlive
			}
			return err
		}
		if handoff && connected {
			return errHandoff
		}
	}
}

// grow makes room in buf for the rest of the packet at its front, whose
// length its fixed header gave (c.want), and, after CONNECT, doubles it up
// to maxReadBuf while reads fill it (a burst: fewer reads for many small
// packets). Before CONNECT the buffer grows only as bytes arrive (doubling
// when full, up to that length, itself bounded by ConnectLimit) and counts
// against the broker's budget for unauthenticated connections. Read loop.
func (c *conn) grow(buf *[]byte, connected, filled bool) error {
	b := *buf
	need := cap(b)
	switch {
	case !connected:
		if c.want <= cap(b) || len(b) < cap(b) {
			return nil
		}
		need = min(2*cap(b), c.want)
	case c.want > cap(b):
		need = c.want
	case filled && cap(b) < maxReadBuf:
		need = min(2*cap(b), maxReadBuf)
	default:
		return nil
	}
	nb := make([]byte, len(b), need)
	copy(nb, b)
	*buf = nb
	if !connected {
		return c.countPre(int64(need))
	}
	return nil
}

// countPre sets the read buffer counted against the broker's pre-CONNECT
// budget (0 once CONNECT is done or the connection ends); over the
// budget is an error. Read loop.
func (c *conn) countPre(n int64) error {
	d := n - c.preBytes
	c.preBytes = n
	if total := c.srv.preBytes.Add(d); d > 0 && n > idleReadBuf && total > c.srv.preConnectBudget() {
		return errPreConnectFull
	}
	return nil
}

// packets handles every whole packet at the start of buf and returns the
// unconsumed rest, moved to the front. The first packet must be CONNECT,
// which its first byte shows ([MQTT-3.1.0-1]): anything else closes the
// connection before more is read.
func (c *conn) packets(buf []byte, connected bool) ([]byte, bool, error) {
	off := 0
	c.want = 0
	for off < len(buf) {
		limit := c.maxPacket
		if !connected {
			if packet.Type(buf[off]>>4) != packet.Connect {
				return buf, false, errFirstNotConnect
			}
			limit = c.maxConnect
		}
		n, err := packet.Size(buf[off:], limit)
		if err != nil {
			return buf, connected, err
		}
		if n == 0 || n > len(buf)-off {
			c.want = n
			break
		}
		raw := buf[off : off+n]
		off += n
		if !connected {
			if err := c.onConnect(raw); err != nil {
				return buf, false, err
			}
			connected = true
			_ = c.countPre(0)
			continue
		}
		if err := c.handle(raw); err != nil {
			return buf, connected, err
		}
	}
	rest := copy(buf, buf[off:])
	return buf[:rest], connected, nil
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
	o.AppendLocked(pp.Payload)
	over := o.OverLocked()
	o.Unlock()
	c.st.sent(len(pp.Payload))
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

// Close ends the connection from any goroutine; a 5.0 client is told why
// with a DISCONNECT when the reason carries a code.
func (c *conn) Close(reason error) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	reason = reloadReason(shutdownReason(reason)) // lameduck.go, reason.go
	c.reason.Store(&reason)
	var code packet.Code
	if errors.As(reason, &code) && code >= 0x80 {
		transport.SetCloseStatus(c.nc, wsCloseCode(code), code.Error())
	}
	// No DISCONNECT before a successful CONNACK [MQTT-3.14.0-1].
	if c.v == packet.V5 && c.accepted.Load() && errors.As(reason, &code) && code >= 0x80 {
		c.write(c.disconnect(code, reason))
	}
	if errors.Is(reason, broker.ErrSlowConsumer) {
		c.out.Close(false)
		_ = c.nc.Close()
		return
	}
	c.out.Close(true)
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

// end runs when the read loop stopped: tell the client why (5.0), send
// the will unless the client disconnected normally, detach the session.
func (c *conn) end(err error) {
	if c.onEnd != nil {
		defer c.onEnd()
	}
	c.logEnd(err)
	if err != nil {
		if errors.Is(err, broker.ErrServerShutdown) {
			err = fmt.Errorf("%w: %w", packet.ServerShuttingDown, err)
		}
		c.lingerAfter(err)
		c.Close(err)
	} else {
		c.Close(nil)
	}
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
	c.rbuf, c.aliases = nil, nil
	c.aliasBytes.Store(0)
	if c.counted {
		c.srv.conns.Add(-1)
	}
	c.drain()
}

// lingerAfter decides whether the connection, ending with err, closes
// gently: a 5.0 client that sent a packet over the limit (DISCONNECT
// 0x95) has more of it on the way, one past the Receive Maximum (0x93)
// answers the PUBRECs it reads with PUBRELs, and closing the socket on
// unread input would reset the connection, losing the DISCONNECT. Then
// the writer half-closes after it (writerEnded) and drain reads what is
// left. Read loop.
func (c *conn) lingerAfter(err error) {
	_, ok := c.nc.(interface{ CloseWrite() error })
	c.linger.Store(ok && c.v == packet.V5 && c.accepted.Load() &&
		(errors.Is(err, packet.PacketTooLarge) || errors.Is(err, packet.ReceiveMaxExceeded)))
}

// drain discards the client's input until it closes, for a second and
// 16 MiB at most, then closes the socket (lingerAfter). Read loop.
func (c *conn) drain() {
	if !c.linger.Load() {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, c.nc, 16<<20)
	_ = c.nc.Close()
}

// revoked: the connection was closed because a reload no longer
// authorizes its identity (no will then).
func (c *conn) revoked() bool {
	r := c.reason.Load()
	return r != nil && revoked(*r)
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
