package natsproto

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/subject"
	"github.com/busbar/busbar/transport"
)

// connectOpts is the client's CONNECT JSON.
type connectOpts struct {
	Verbose      bool   `json:"verbose"`
	Pedantic     bool   `json:"pedantic"`
	TLSRequired  bool   `json:"tls_required"`
	Echo         *bool  `json:"echo"`
	Headers      bool   `json:"headers"`
	NoResponders bool   `json:"no_responders"`
	Name         string `json:"name"`
	Lang         string `json:"lang"`
	Version      string `json:"version"`
	Protocol     int    `json:"protocol"`
	User         string `json:"user"`
	Pass         string `json:"pass"`
	AuthToken    string `json:"auth_token"`
	JWT          string `json:"jwt"`
	NKey         string `json:"nkey"`
	Sig          string `json:"sig"`
}

// sub is a NATS subscription's protocol state (broker.Subscription.Opaque).
type sub struct {
	sid []byte
}

// conn is one NATS client connection: the protocol on a transport.Conn
// (read loop, outbound queue and writer, ping timer, figures).
type conn struct {
	tc    transport.Conn
	out   *transport.Outbound // tc.Out(), for the delivery path
	b     *broker.Broker
	t     *Transport
	sess  *broker.Session
	p     *parser
	nonce []byte
	ws    bool
	pre   *preAuth                // WebSocket handshake results; nil otherwise
	cs    transport.CloseStatuser // the WebSocket connection, set before serve
	onEnd func()                  // ConnOptions.OnEnd: run by finish or refuse

	// Read loop state.
	handoff   bool // move the read loop to a fresh goroutine after CONNECT
	batch     broker.Batch
	msg       broker.Message
	connected bool
	verbose   bool
	pedantic  bool
	headers   bool
	noResp    bool
	proto     int // CONNECT protocol: 1 takes INFO updates

	mu   sync.Mutex // guards subs
	subs map[string]*broker.Subscription

	authTimer *time.Timer
	asyncInfo atomic.Bool                    // PONG sent after a CONNECT with protocol 1: INFO updates are safe
	cid       atomic.Uint64                  // c.sess.ID() for Close, which may run before serve has c.sess
	sessp     atomic.Pointer[broker.Session] // c.sess for the same readers (log.go)
	client    atomic.Pointer[clientMeta]     // CONNECT's lang and version (stats.go)
}

var (
	_ broker.Client              = (*conn)(nil)
	_ broker.SubscriptionRevoker = (*conn)(nil)
	_ transport.Handler          = (*conn)(nil)
	_ transport.DirectReader     = (*conn)(nil)
)

// Deliver formats MSG/HMSG for s into the outbound queue. Publisher's
// goroutine; never blocks.
func (c *conn) Deliver(s *broker.Subscription, m *broker.Message) bool {
	sd := s.Opaque.(*sub)
	hdr := m.Header != nil && c.headers
	o := c.out
	o.Lock()
	if o.ClosedLocked() {
		o.Unlock()
		return true
	}
	// The MSG line: op, subject, sid, reply, two sizes, separators.
	subj := m.Subject
	if m.Ext != nil {
		if d, ok := m.Ext.(broker.DeliverAs); ok {
			subj = d
		}
	}
	buf := o.HeadroomLocked(len(subj) + len(sd.sid) + len(m.Reply) + 48)
	if hdr {
		buf = append(buf, "HMSG "...)
	} else {
		buf = append(buf, "MSG "...)
	}
	buf = append(buf, subj...)
	buf = append(buf, ' ')
	buf = append(buf, sd.sid...)
	buf = append(buf, ' ')
	if len(m.Reply) > 0 {
		buf = append(buf, m.Reply...)
		buf = append(buf, ' ')
	}
	size := len(m.Payload)
	if hdr {
		buf = strconv.AppendInt(buf, int64(len(m.Header)), 10)
		buf = append(buf, ' ')
		size += len(m.Header)
	}
	buf = strconv.AppendInt(buf, int64(size), 10)
	buf = append(buf, '\r', '\n')
	o.CommitLocked(buf)
	if hdr {
		o.AppendLocked(m.Header)
	}
	o.AppendPayloadLocked(m) // by reference when large and shared
	o.AppendLocked(crlf)
	over := o.OverLocked()
	o.Unlock()
	c.tc.CountOut(size)
	return !over
}

var crlf = []byte("\r\n")

// Wake flushes the writer once per publish batch.
func (c *conn) Wake() { c.out.Wake() }

// Close ends the connection from any goroutine (transport.Conn.Close:
// the first reason wins; Closing says it to the client).
func (c *conn) Close(reason error) { c.tc.Close(reason) }

// Closing reports why the connection closes: a *protoError is sent as
// -ERR first; a slow consumer is cut without flushing, so it gets none.
// transport.Conn.Close, once.
func (c *conn) Closing(reason error) {
	c.log().Debug("nats: closing", "reason", reason)
	var we *broker.WriteError
	if errors.As(reason, &we) {
		c.log().Warn("nats: write failed, closing", "err", we.Err)
	}
	if c.cs != nil {
		c.cs.SetCloseStatus(closeStatus(reason))
	}
	if errors.Is(reason, broker.ErrSlowConsumer) {
		return
	}
	var pe *protoError
	switch {
	case errors.As(reason, &pe) && !pe.silent:
		c.out.Write(errLine(pe.text))
	case errors.Is(reason, auth.ErrNotAuthorized): // refused at a reload
		c.out.Write(errLine(errAuthViolation.text))
	}
}

// closeStatus is the WebSocket close code and reason for why a
// connection closes (nats-server's choices).
func closeStatus(reason error) (int, string) {
	var pe *protoError
	switch {
	case errors.Is(reason, broker.ErrSlowConsumer):
		return transport.ClosePolicyViolation, errSlowConsumer.text
	case errors.Is(reason, broker.ErrClosed), errors.Is(reason, broker.ErrServerShutdown):
		return transport.CloseGoingAway, "Server Shutdown"
	case errors.As(reason, &pe) && pe.silent:
		return transport.CloseProtocolError, closeViolation
	case errors.As(reason, &pe):
		switch pe {
		case errAuthViolation, errAuthTimeout, errAuthExpired, errMaxConns:
			return transport.ClosePolicyViolation, pe.text
		case errMaxPayload:
			return transport.CloseMessageTooBig, pe.text
		}
		return transport.CloseProtocolError, pe.text
	case errors.Is(reason, auth.ErrNotAuthorized):
		return transport.ClosePolicyViolation, errAuthViolation.text
	}
	return 0, ""
}

func errLine(text string) []byte { return []byte("-ERR '" + text + "'\r\n") }

// sendErr reports a non-fatal error to the client.
func (c *conn) sendErr(text string) { c.out.Write(errLine(text)) }

// serve runs the connection on nc until it ends. The calling goroutine
// becomes the read loop (until the hand-off, with c.handoff).
func (c *conn) serve(ctx context.Context, nc net.Conn) error {
	opts := c.b.Options()
	c.tc.Init(c.b, nc, c, transport.ConnConfig{
		MaxPending: opts.MaxPending, WriteDeadline: opts.WriteDeadline, Ping: pingLine, Stale: errStale,
	})
	c.out = c.tc.Out()
	c.p = newParser(c, opts.MaxControlLine, opts.MaxPayload)
	var err error
	c.sess, err = c.b.Connect(c, nil, broker.ConnectOptions{
		Transport: c.t.Name(), ConnType: c.connType(), Remote: nc.RemoteAddr().String(),
	})
	if c.sess != nil {
		c.cid.Store(c.sess.ID())
		c.sessp.Store(c.sess)
	}
	if err != nil {
		if c.onEnd != nil {
			defer c.onEnd()
		}
		return c.refuse(err)
	}
	nc, err = c.t.sendInfo(ctx, c)
	if err != nil {
		_ = nc.Close()
		c.finish()
		return err
	}
	c.tc.Start(nc)
	if c.b.AuthRequired() {
		timeout := opts.AuthTimeout
		if c.pre != nil && c.pre.timeout > 0 {
			timeout = c.pre.timeout
		}
		c.authTimer = time.AfterFunc(timeout, func() {
			c.Close(errAuthTimeout)
		})
	}
	c.tc.StartPing()
	err = c.tc.Serve(c.handoff)
	var pe *protoError
	if errors.As(err, &pe) {
		return err
	}
	return nil
}

// Received parses what the read loop read, then wakes the writers it
// queued for (transport.Handler). Read loop.
func (c *conn) Received(b []byte) (int, int, error) {
	err := c.p.parse(b)
	c.batch.Flush()
	return len(b), 0, err
}

// DirectBuf and DirectFilled read a large payload spanning reads straight
// into its own buffer (transport.DirectReader). Read loop.
func (c *conn) DirectBuf() []byte { return c.p.directBuf() }

func (c *conn) DirectFilled(n int) error {
	err := c.p.directFilled(n)
	c.batch.Flush()
	return err
}

// Ended closes the connection once the read loop stopped: after a
// protocol error, with its -ERR, reading and dropping input until the
// writer has sent it and closed the socket (a peer still writing would
// otherwise never read it on a synchronous transport such as the
// in-process pipe, and could fill the socket buffers on TCP).
func (c *conn) Ended(err error) {
	c.Close(err)
	var pe *protoError
	if errors.As(err, &pe) {
		c.tc.Drain(c.b.Options().WriteDeadline, math.MaxInt64)
	}
	c.finish()
}

// finish releases what the read loop held, once it has ended.
func (c *conn) finish() {
	if c.onEnd != nil {
		defer c.onEnd()
	}
	if c.authTimer != nil {
		c.authTimer.Stop()
	}
	c.sess.Close()
}

func (c *conn) connType() auth.ConnType {
	switch {
	case c.ws:
		return auth.ConnWebSocket
	case c.t.inProcess:
		return auth.ConnInProcess
	}
	return auth.ConnStandard
}

// refuse answers a connection the broker would not take.
func (c *conn) refuse(err error) error {
	nc := c.tc.NetConn()
	if errors.Is(err, broker.ErrMaxConnections) {
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(c.t.infoLine(c, nil))
		_, _ = nc.Write(errLine(errMaxConns.text))
	}
	_ = nc.Close()
	return err
}

var (
	pingLine = []byte("PING\r\n")
	pongLine = []byte("PONG\r\n")
	okLine   = []byte("+OK\r\n")
)

// --- parser callbacks (read loop) ---

// ready makes sure CONNECT came first when authentication is required.
func (c *conn) ready() error {
	if c.connected || !c.b.AuthRequired() {
		return nil
	}
	return errAuthViolation
}

func (c *conn) ok() {
	if c.verbose {
		c.out.Write(okLine)
	}
}

func (c *conn) onConnect(arg []byte) error {
	var o connectOpts
	if err := json.Unmarshal(arg, &o); err != nil {
		return errBadConnect
	}
	if o.Protocol < 0 || o.Protocol > 1 {
		return errBadProtocol
	}
	if o.NoResponders && !o.Headers {
		return errNoRespNeedsHeaders
	}
	if !c.connected {
		if c.pre != nil && c.pre.vouched { // busbar's own in-process client (InProcessAs)
			if c.authTimer != nil {
				c.authTimer.Stop()
			}
			if err := c.sess.Admit(c.pre.id); err != nil {
				return errMaxConns
			}
			c.sess.Vouch()
		} else if c.b.AuthRequired() {
			if err := c.authenticate(&o); err != nil {
				return err
			}
		} else {
			c.sess.Remember(c.credentials(&o)) // checked if a reload adds authentication
		}
	}
	c.verbose, c.pedantic, c.headers, c.noResp = o.Verbose, o.Pedantic, o.Headers, o.NoResponders
	c.proto = o.Protocol
	c.sess.SetEcho(o.Echo == nil || *o.Echo)
	c.sess.SetName(o.Name)
	c.client.Store(&clientMeta{lang: o.Lang, version: o.Version})
	c.connected = true
	c.tc.SetUp()
	c.ok()
	return nil
}

func (c *conn) authenticate(o *connectOpts) error {
	if c.authTimer != nil {
		c.authTimer.Stop()
	}
	cr := c.credentials(o)
	var id *auth.Identity
	var err error
	if c.pre != nil && c.pre.id != nil && cr.User == "" && cr.Password == "" && cr.Token == "" && cr.JWT == "" && cr.NKey == "" {
		// Authenticated at the WebSocket handshake; CONNECT adds nothing.
		id, cr = c.pre.id, c.pre.cr
	} else if id, err = c.b.Authenticate(context.Background(), cr); err != nil {
		return errAuthViolation
	}
	if err := c.sess.Admit(id); err != nil {
		return errMaxConns // the identity's own max_connections
	}
	c.sess.Remember(cr) // a reload checks them again
	if id != nil && !id.Expires.IsZero() {
		// Credentials that expire (JWT exp, connect times) end the
		// connection then; finish stops the timer.
		c.authTimer = time.AfterFunc(time.Until(id.Expires), func() { c.Close(errAuthExpired) })
	}
	return nil
}

// credentials gathers what the client presented in CONNECT.
func (c *conn) credentials(o *connectOpts) *auth.Credentials {
	cr := &auth.Credentials{
		Conn: c.connType(), RemoteAddr: c.tc.NetConn().RemoteAddr(),
		User: o.User, Password: o.Pass, Token: o.AuthToken, JWT: o.JWT, NKey: o.NKey,
		Nonce: c.nonce,
	}
	if o.Sig != "" {
		sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
		if err != nil {
			sig, err = base64.StdEncoding.DecodeString(o.Sig)
		}
		if err == nil {
			cr.Sig = sig
		}
	}
	cr.TLS = transport.TLSState(c.tc.NetConn())
	if c.pre != nil {
		cr.AddRequest(c.pre.cr) // the WebSocket upgrade request, for the Authenticator
	}
	return cr
}

// Revoked tells the client a reload removed sub (nats-server's text).
// Any goroutine.
func (c *conn) Revoked(s *broker.Subscription) {
	sd := s.Opaque.(*sub)
	c.mu.Lock()
	if c.subs[string(sd.sid)] == s {
		delete(c.subs, string(sd.sid))
	}
	c.mu.Unlock()
	if len(s.Queue) > 0 {
		c.sendErr(fmt.Sprintf("Permissions Violation for Subscription to %q using queue %q (sid %q)", s.Subject, s.Queue, sd.sid))
	} else {
		c.sendErr(fmt.Sprintf("Permissions Violation for Subscription to %q (sid %q)", s.Subject, sd.sid))
	}
}

func (c *conn) onPub(subj, reply []byte, hdrLen int, msg []byte, owned bool) error {
	if err := c.ready(); err != nil {
		return err
	}
	if hdrLen >= 0 && !c.headers {
		return errHeadersUnsupported
	}
	if !(c.sess.Routable(subj) || jsAPIRequest(subj)) || (reply != nil && !subject.ValidLiteral(reply)) {
		c.sendErr(errInvalidPubSubject.text)
		return nil
	}
	if c.verbose && !c.sess.CanPublish(subj) { // +OK must precede our own MSG, -ERR replace it
		c.sendErr(fmt.Sprintf("Permissions Violation for Publish to %q", subj))
		return nil
	}
	if len(subj) > len(nrgPrefix) && string(subj[:len(nrgPrefix)]) == nrgPrefix {
		// nats-server's Raft groups' subjects: no client publishes there
		// (nats-server lets its system account; busbar runs no Raft).
		c.sendErr(fmt.Sprintf("Permissions Violation for Publish to %q", subj))
		return nil
	}
	if len(reply) > 0 && reservedReply(reply) {
		if !c.sess.CanPublish(subj) { // nats-server checks the subject first
			c.sendErr(fmt.Sprintf("Permissions Violation for Publish to %q", subj))
		} else {
			c.sendErr(fmt.Sprintf("Permissions Violation for Publish with Reply of %q", reply))
		}
		return nil
	}
	m := &c.msg
	m.Subject, m.Reply, m.Header, m.Payload = subj, reply, nil, msg
	if hdrLen >= 0 {
		m.Header, m.Payload = msg[:hdrLen:hdrLen], msg[hdrLen:]
	}
	m.Borrow()
	if owned {
		m.OwnPayload()
	}
	c.sess.CountIn(len(msg))
	c.ok()                                // before deliveries, as nats-server: +OK precedes our own MSG
	n, err := c.sess.Publish(&c.batch, m) // the gate: the publish permission
	if err != nil {
		c.sendErr(fmt.Sprintf("Permissions Violation for Publish to %q", subj))
		return nil
	}
	if n == 0 && len(reply) > 0 && c.noResp {
		c.noResponders(reply)
	}
	return nil
}

// nrgPrefix starts the subjects of nats-server's Raft groups.
const nrgPrefix = "$NRG."

// reservedReply reports a reply subject only the server may set, which
// nats-server refuses from a client: a service import's response
// ("_R_."), a JetStream acknowledgement ("$JS.ACK."), a gateway-routed
// reply ("_GR_.", "$GR.").
func reservedReply(reply []byte) bool {
	for _, p := range [...]string{"_R_.", "$JS.ACK.", "_GR_.", "$GR."} {
		if len(reply) > len(p) && string(reply[:len(p)]) == p {
			return true
		}
	}
	return false
}

// jsAPIRequest: a JetStream API request whose subject carries a filter
// with wildcards (nats.go's CONSUMER.CREATE.<stream>.<name>.<filter>, which
// its key-value watchers and ordered consumers send). nats-server routes
// such a subject as it is outside pedantic mode; busbar refuses other
// non-literal publish subjects, and routes these tokens literally (they
// reach the subscriptions of the JetStream API, a leaf link's among them).
func jsAPIRequest(subj []byte) bool {
	return bytes.HasPrefix(subj, []byte("$JS.")) && subject.ValidFilter(subj)
}

var noRespHeader = []byte("NATS/1.0 503\r\n\r\n")

func (c *conn) noResponders(reply []byte) {
	nr := &broker.Message{Subject: reply, Header: noRespHeader, Payload: []byte{}}
	nr.Borrow()
	c.sess.DeliverNoResponders(&c.batch, nr)
}

func (c *conn) onSub(subj, queue, sid []byte) error {
	if err := c.ready(); err != nil {
		return err
	}
	if !subject.ValidFilter(subj) || (queue != nil && !subject.ValidLiteral(queue)) {
		c.sendErr(errInvalidSubject.text)
		return nil
	}
	c.mu.Lock()
	_, dup := c.subs[string(sid)]
	c.mu.Unlock()
	if dup {
		c.ok()
		return nil
	}
	s := &broker.Subscription{
		Subject: clone(subj), Queue: clone(queue), Client: c,
		Opaque: &sub{sid: clone(sid)},
	}
	switch err := c.sess.Subscribe(s); {
	case err == nil:
	case errors.Is(err, broker.ErrPermSubscribe):
		if queue != nil {
			c.sendErr(fmt.Sprintf("Permissions Violation for Subscription to %q using queue %q", subj, queue))
		} else {
			c.sendErr(fmt.Sprintf("Permissions Violation for Subscription to %q", subj))
		}
		return nil
	case errors.Is(err, broker.ErrMaxSubs):
		c.sendErr(errMaxSubs.text)
		return nil
	case errors.Is(err, broker.ErrInvalidSubject):
		c.sendErr(errInvalidSubject.text)
		return nil
	default:
		return nil // session closing
	}
	c.mu.Lock()
	if c.subs == nil {
		c.subs = make(map[string]*broker.Subscription)
	}
	c.subs[string(s.Opaque.(*sub).sid)] = s
	if len(c.subs) >= 64 && len(c.subs) > 2*c.sess.NumSubscriptions() {
		// Subscriptions ended by their UNSUB max (old-style requests)
		// leave their sid behind: sweep them, amortized over SUBs.
		for sid, old := range c.subs {
			if old.Closed() {
				delete(c.subs, sid)
			}
		}
	}
	c.mu.Unlock()
	c.ok()
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func (c *conn) onUnsub(sid []byte, max int64) error {
	if err := c.ready(); err != nil {
		return err
	}
	c.mu.Lock()
	s := c.subs[string(sid)]
	if s != nil && (max == 0 || s.Delivered() >= max) {
		delete(c.subs, string(sid))
	}
	c.mu.Unlock()
	if s != nil && !s.SetMax(max) {
		c.sess.Unsubscribe(s)
	} else if s != nil && max == 0 {
		c.sess.Unsubscribe(s)
	}
	c.ok()
	return nil
}

func (c *conn) onPing() error {
	if err := c.ready(); err != nil {
		return err
	}
	c.pong() // lameduck.go
	return nil
}

func (c *conn) onPong() error {
	c.tc.Ponged()
	return nil
}
