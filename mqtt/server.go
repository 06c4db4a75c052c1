// Package mqtt speaks MQTT 3.1.1 and 5.0 on one port and maps MQTT topics
// onto the broker's NATS subject space (nats-server 2.10+'s mapping:
// sensors/t1 is sensors.t1, + is *, # is >), so MQTT, NATS, WebSocket and
// in-process clients share one namespace. Package config builds it from
// the mqtt {} block; mqtt/packet is the codec.
//
// New builds a Transport from Options (address, TLS, ack wait, in-flight
// window, packet size and keep-alive limits); Listen binds it and
// Broker.Start serves it, and the websocket package uses it as the
// transport.ConnServer for MQTT over WebSocket. Sessions (QoS 1 and 2,
// queued messages, wills, retained messages, shared subscriptions,
// takeover) are kept per broker and mirrored into the broker's
// store.Store, so with store/filestore persistent sessions survive a
// restart. TopicToSubject and SubjectToTopic expose the mapping;
// SessionStats and Retained report figures for monitoring.
package mqtt

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/transport"
)

// Options configure the MQTT listener and the MQTT sessions of a broker.
type Options struct {
	Host string // default 127.0.0.1
	Port int    // 0 picks a free port
	TLS  *transport.TLSOptions

	AckWait       time.Duration // default 30s (3.1.1 redelivery)
	MaxAckPending int           // in-flight QoS 1/2 per session; default 1024, max 65535
	// MaxPacketSize bounds a packet from a client (0: 256 MiB); the
	// broker's max_payload plus 64 KiB bounds it too (PacketLimit).
	MaxPacketSize int
	MaxKeepAlive  uint16        // 0: none; else a longer (or zero) keep alive is lowered to it
	SessionExpiry time.Duration // upper bound of a 5.0 session expiry (CONNACK says so when it lowers the client's); 0: none
	// ReceiveMaximum is the Receive Maximum the server announces (5.0):
	// how many QoS 1 and 2 PUBLISHes a client may have unacknowledged (a
	// QoS 1 one until its PUBACK is sent, after the store made it durable;
	// a QoS 2 one until PUBREL). One more ends the connection with
	// DISCONNECT 0x93. 0: DefaultReceiveMaximum.
	ReceiveMaximum uint16

	// MaxConnections bounds this broker's MQTT connections (TCP and
	// WebSocket); past it CONNECT gets 0x97 (3.1.1: 0x03). 0: no bound of
	// its own (the broker's max_connections still applies).
	MaxConnections int
	// MaxTopicAlias is the Topic Alias Maximum announced to 5.0 clients;
	// 0: DefaultMaxTopicAlias, negative: no aliases. The topics a
	// connection's aliases name may hold MaxAliasBytes in all.
	MaxTopicAlias int
	// MaxQueuedBytes bounds the QoS 1/2 messages a session holds (queued
	// and in flight: subject, payload, properties and bookkeeping);
	// 0: DefaultMaxQueuedBytes, negative: no bound. New messages past it
	// are dropped and counted (DropQueueBytes).
	MaxQueuedBytes int64
	// MaxQueuedMessages bounds a session's queue (messages waiting for the
	// client or its receive window); 0: DefaultMaxQueuedMessages,
	// negative: no bound (DropQueueMessages).
	MaxQueuedMessages int
	// MaxOfflineBytes bounds what all sessions without a connection hold
	// together; 0: DefaultMaxOfflineBytes, negative: no bound
	// (DropOfflineBytes).
	MaxOfflineBytes int64

	preBudget int64 // tests: the pre-CONNECT budget (preConnectBudget)
	// tests: how far back a new subscription catches up (recent.go)
	recentWindow time.Duration
}

// Defaults of the bounds in Options.
const (
	DefaultMaxTopicAlias     = 16
	DefaultMaxQueuedBytes    = 64 << 20 // nats-server's max_pending for a client
	DefaultMaxQueuedMessages = 100000
	DefaultMaxOfflineBytes   = 256 << 20
	// DefaultReceiveMaximum is ReceiveMaximum's default: max_ack_pending's
	// default, the window in the other direction. A client can never pass
	// 65535 (it has no more packet identifiers), so announcing that would
	// leave a client that ignores the limit unchecked.
	DefaultReceiveMaximum = 1024
	// MaxAliasBytes bounds the topics one connection's aliases name;
	// past it the connection ends with DISCONNECT 0x97.
	MaxAliasBytes = 64 << 10
	// connectSlack is what a packet may hold beyond max_payload (topic,
	// properties, CONNECT fields): PacketLimit.
	connectSlack = 64 << 10
	// maxWillPayload is the largest will payload CONNECT can carry (a
	// two-byte length).
	maxWillPayload = 65535
)

func (o *Options) setDefaults() {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.AckWait == 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = 1024
	}
	if o.MaxPacketSize == 0 {
		o.MaxPacketSize = 256 << 20
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = DefaultReceiveMaximum
	}
	switch {
	case o.MaxTopicAlias == 0:
		o.MaxTopicAlias = DefaultMaxTopicAlias
	case o.MaxTopicAlias > 65535:
		o.MaxTopicAlias = 65535
	}
	if o.MaxQueuedBytes == 0 {
		o.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if o.MaxQueuedMessages == 0 {
		o.MaxQueuedMessages = DefaultMaxQueuedMessages
	}
	if o.MaxOfflineBytes == 0 {
		o.MaxOfflineBytes = DefaultMaxOfflineBytes
	}
}

// PacketLimit is the largest packet a client may send: MaxPacketSize,
// and no more than maxPayload plus 64 KiB (a PUBLISH's topic and
// properties, or a CONNECT with a will of maxPayload), so nothing larger
// than the broker's max_payload gets in. The 5.0 CONNACK announces it.
func PacketLimit(o Options, maxPayload int) int {
	o.setDefaults()
	return min(o.MaxPacketSize, maxPayload+connectSlack)
}

// ConnectLimit is the largest CONNECT a client may send, read before it
// is authenticated: 64 KiB for its fields and properties plus a will
// payload of up to max_payload (at most 65535 bytes, MQTT's limit). A
// larger one is refused from its fixed header.
func ConnectLimit(o Options, maxPayload int) int {
	return min(PacketLimit(o, maxPayload), connectSlack+min(maxPayload, maxWillPayload))
}

// Transport is the MQTT listener.
type Transport struct {
	transport.Listener
	opts   Options
	tlsCfg *tls.Config
}

var _ transport.Transport = (*Transport)(nil)

// New builds the MQTT transport.
func New(o Options) (*Transport, error) {
	o.setDefaults()
	t := &Transport{opts: o}
	var err error
	if t.tlsCfg, err = t.Setup("mqtt", o.Host, o.Port, o.TLS); err != nil {
		return nil, err
	}
	return t, nil
}

// Name is "mqtt".
func (t *Transport) Name() string { return "mqtt" }

// Serve accepts MQTT connections until Close.
func (t *Transport) Serve(ctx context.Context, b *broker.Broker) error {
	srv := serverFor(b, t.opts)
	t.Log = b.Logger()
	return t.Accept(ctx, b.Go, func(nc net.Conn) {
		if t.tlsCfg != nil {
			tc, err := transport.ServerHandshake(ctx, nc, t.tlsCfg, t.opts.TLS.HandshakeTimeout())
			if err != nil {
				_ = nc.Close()
				return
			}
			nc = tc
		}
		srv.serveConn(nc, auth.ConnMQTT, true, nil)
	})
}

// ServeConn runs MQTT on an accepted connection (MQTT over WebSocket).
func (t *Transport) ServeConn(ctx context.Context, b *broker.Broker, nc net.Conn, o transport.ConnOptions) error {
	ct := auth.ConnMQTT
	if o.WebSocket {
		ct = auth.ConnMQTTWS
	}
	serverFor(b, t.opts).serveConn(nc, ct, o.OnEnd != nil, &o)
	return nil
}

// server is the MQTT state of one broker, shared by its MQTT listeners:
// sessions by account and client identifier (retained messages are the
// broker's, per account: broker/retained.go).
type server struct {
	b    *broker.Broker
	opts Options

	loaded  sync.Once        // the Store's sessions
	grouped store.Grouped    // the Store, when it group-commits
	plog    store.PublishLog // the Store, when it keeps a publish log (publog.go)

	mu       sync.Mutex                       // guards sessions, recent and replays
	sessions map[string]*session              // by sessionKey
	recent   map[string]*recentLog            // by account (recent.go)
	replays  map[*session]*store.SessionState // suspended sessions' publish log replays (publog.go)

	// Accounting (atomics): the bounds of Options and the figures of
	// Stats.
	conns    atomic.Int64 // connections past CONNECT (MaxConnections)
	offline  atomic.Int64 // bytes held by sessions without a connection
	preBytes atomic.Int64 // read buffers of connections before CONNECT
	denied   atomic.Int64
	logSeq   atomic.Uint64 // publish log ids (publog.go)
	drops    [numDrops]atomic.Int64
	dropLog  [numDrops]atomic.Int64 // Unix ns before which that reason is not logged again
}

type serverKey struct{}

// serverFor is b's MQTT state, made by the first MQTT transport that
// serves on b, with that transport's options (New set their defaults);
// another MQTT transport on the same broker (a second listener, the
// WebSocket one) shares it. Readers that must not make it (SessionStats)
// use ExtensionValue.
func serverFor(b *broker.Broker, o Options) *server {
	srv := b.Extension(serverKey{}, func() any {
		srv := &server{b: b, opts: o, sessions: make(map[string]*session)}
		srv.grouped, _ = b.Store().(store.Grouped)
		srv.plog, _ = b.Store().(store.PublishLog)
		return srv
	}).(*server)
	// Outside Extension's lock: restoring connects sessions to the broker.
	srv.loaded.Do(func() {
		if sh := srv.shared(); sh != nil {
			sh.OnTakeover(srv.takenOver)
			sh.OnAdopt(srv.adopted)
		}
		srv.restore()
	})
	return srv
}

// Retained reports how many retained messages the broker holds, in every
// account.
func Retained(b *broker.Broker) int { return b.NumRetained() }

// endSession removes s for good: its subscriptions, queue and will.
func (srv *server) endSession(s *session) {
	srv.mu.Lock()
	if srv.sessions[s.key] == s {
		delete(srv.sessions, s.key)
	}
	delete(srv.replays, s)
	srv.mu.Unlock()
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.check(srv.b.Store().DeleteSession(bg, s.key))
	srv.unclaim(s.key)
	w := s.will
	s.will = nil
	s.releaseAllLocked()
	s.mu.Unlock()
	if w != nil && w.timer != nil {
		// A delayed will is sent at session end at the latest ([MQTT-3.1.3-9]).
		if w.timer.Stop() {
			srv.publishWill(s, w)
		}
	}
	s.bs.Close()
}

// endSessionIfIdle ends s when its expiry passes with no connection.
func (srv *server) endSessionIfIdle(s *session) {
	s.mu.Lock()
	idle := s.conn == nil
	s.mu.Unlock()
	if idle {
		srv.endSession(s)
	}
}

// publishWill publishes a will message through the session, so the
// broker's gate checks it with the identity's permissions now (they may
// have changed since CONNECT) and keeps it when retained.
func (srv *server) publishWill(s *session, w *will) {
	var batch broker.Batch
	m := w.m
	if w.props != nil {
		if x := newMsgExt(w.props, time.Now()); x != nil { // its expiry counts from now (5.0 §3.1.3.2.4)
			m.Ext = x // never a nil *msgExt in the interface
		}
	}
	if _, err := s.bs.Publish(&batch, &m); err != nil {
		srv.b.Logger().Warn("mqtt: will refused", "client_id", s.id, "subject", string(m.Subject), "err", err)
	}
	batch.Flush()
}

// Stats describes a broker's MQTT state: back-pressure is visible here
// (messages and bytes held by sessions, messages dropped and why) and so
// is the memory the broker accounts for.
type Stats struct {
	Sessions, Connected int
	Inflight, Queued    int
	// Dropped counts messages for sessions that were dropped, since the
	// broker started; DroppedBy splits it by reason (every Drop* name).
	Dropped   int64
	DroppedBy map[string]int64
	// Denied counts queued or restored messages dropped because the
	// session's identity may no longer receive them (a reload, a restart).
	Denied   int64
	Retained int
	// QueuedBytes is what sessions hold in QoS 1/2 messages (queued and in
	// flight), OfflineBytes the part held by sessions with no connection.
	QueuedBytes, OfflineBytes int64
	// AliasBytes is what connections' topic aliases hold; PreConnectBytes
	// the read buffers of connections that have not completed CONNECT.
	AliasBytes, PreConnectBytes int64
}

// SessionStats snapshots the MQTT state of b.
// A broker no MQTT transport served on yet has none: zero figures.
func SessionStats(b *broker.Broker) Stats {
	srv, _ := b.ExtensionValue(serverKey{}).(*server)
	if srv == nil {
		st := Stats{Retained: b.NumRetained(), DroppedBy: make(map[string]int64, numDrops)}
		for r := range dropReason(numDrops) {
			st.DroppedBy[r.String()] = 0
		}
		return st
	}
	srv.mu.Lock()
	ss := make([]*session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		ss = append(ss, s)
	}
	srv.mu.Unlock()
	st := Stats{Sessions: len(ss), Retained: srv.b.NumRetained(), Denied: srv.denied.Load(),
		OfflineBytes: srv.offline.Load(), PreConnectBytes: srv.preBytes.Load(), DroppedBy: make(map[string]int64, numDrops)}
	for r := range dropReason(numDrops) {
		n := srv.drops[r].Load()
		st.DroppedBy[r.String()] = n
		st.Dropped += n
	}
	for _, s := range ss {
		s.mu.Lock()
		if s.conn != nil {
			st.Connected++
			st.AliasBytes += s.conn.aliasBytes.Load()
		}
		st.Inflight += len(s.inflight)
		st.Queued += len(s.queue)
		st.QueuedBytes += s.qBytes
		s.mu.Unlock()
	}
	return st
}

// MaxPacketSize is the largest packet the server accepts.
func (t *Transport) MaxPacketSize() int { return t.opts.MaxPacketSize }
