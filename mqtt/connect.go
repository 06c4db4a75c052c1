package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store"
	"github.com/busbar/busbar/subject"
	"github.com/busbar/busbar/transport"
)

// CONNECT: the limits, the identity, the will, the client's settings,
// then the session and CONNACK (accept).

// refuse answers CONNECT with an error code, then the connection closes
// ([MQTT-3.2.2-5]: session present 0 on an error CONNACK). A 5.0 client
// gets the Reason String why carries (withReason).
func (c *conn) refuse(code packet.Code, why error) error {
	c.write(c.connackRefusal(code, why))
	return fmt.Errorf("%w: %w", code, why)
}

// connackCode maps a 5.0 reason code to what the connection's version can
// carry.
func (c *conn) connackCode(code packet.Code) packet.Code {
	if c.v == packet.V5 {
		return code
	}
	return packet.V311ReturnCode(code)
}

func (c *conn) onConnect(raw []byte) error {
	cp, err := c.dec.DecodeConnect(raw)
	if err != nil {
		if errors.Is(err, packet.UnsupportedProtocolVersion) {
			c.v = packet.V311
			if cp != nil && cp.Version == packet.V5 {
				c.v = packet.V5
			}
			return c.refuse(c.connackCode(packet.UnsupportedProtocolVersion), err) // [MQTT-3.1.2-2]
		}
		return err
	}
	c.v = cp.Version
	c.problemSettings(cp)
	h := &hello{cp: cp, clientID: string(cp.ClientID)}
	for _, step := range []func(*hello) error{c.connectLimits, c.connectIdentity, c.connectWill, c.connectSettings} {
		if err := step(h); err != nil {
			return err
		}
	}
	return c.accept(h)
}

// hello is what CONNECT established, step by step (onConnect).
type hello struct {
	cp       *packet.ConnectPacket
	clientID string
	assigned bool // clientID was made here ([MQTT-3.1.3-6])
	id       *auth.Identity
	cr       *auth.Credentials
	willSubj []byte
	ka       uint16 // keep alive in force
	serverKA bool   // ka is max_keep_alive's, not the client's
}

// connectLimits refuses a CONNECT past mqtt { max_connections } (0x97,
// 3.1.1 0x03) or with a will payload over max_payload (0x95, 3.1.1
// close). Read loop.
func (c *conn) connectLimits(h *hello) error {
	o := &c.srv.opts
	c.counted = true
	if n := c.srv.conns.Add(1); o.MaxConnections > 0 && n > int64(o.MaxConnections) {
		err := fmt.Errorf("%w: mqtt max_connections %d", broker.ErrMaxConnections, o.MaxConnections)
		return c.refuse(c.connackCode(packet.QuotaExceeded), withReason(err, reasonServerConns)) // 3.1.1: 0x03
	}
	if cp := h.cp; cp.WillFlag && len(cp.WillPayload) > c.maxPayload {
		err := fmt.Errorf("%w: a will payload of %d bytes, max_payload %d", packet.PacketTooLarge, len(cp.WillPayload), c.maxPayload)
		if c.v != packet.V5 {
			return err // 3.1.1 has no return code for it: close
		}
		return c.refuse(packet.PacketTooLarge, withReason(err,
			fmt.Sprintf("a will payload of %d bytes is over the server's max_payload (%d)", len(cp.WillPayload), c.maxPayload)))
	}
	return nil
}

// connectIdentity assigns a client id when there is none, authenticates
// and registers the connection with the broker (its identity's own
// max_connections). Read loop.
func (c *conn) connectIdentity(h *hello) error {
	cp := h.cp
	if h.clientID == "" {
		if !cp.CleanStart && c.v != packet.V5 {
			return c.refuse(packet.ClientIDNotValid.V311(), errEmptyClientID)
		}
		h.clientID, h.assigned = newClientID(), true
	}
	id, cr, err := c.authenticate(cp, h.clientID)
	if err != nil {
		code, reason := packet.NotAuthorized, reasonAuthFailed
		if errors.Is(err, broker.ErrMaxConnections) {
			code, reason = packet.QuotaExceeded, reasonUserConns
		}
		if cp.UsernameFlag && errors.Is(err, auth.ErrNotAuthorized) {
			code, reason = packet.BadUserOrPassword, reasonBadLogin
		}
		return c.refuse(c.connackCode(code), withReason(err, reason))
	}
	h.id, h.cr = id, cr
	reason := reasonServerConns
	c.bs, err = c.srv.b.Connect(c, id, broker.ConnectOptions{Transport: "mqtt", ConnType: c.ct, Name: h.clientID, Remote: c.nc.RemoteAddr().String()})
	if err == nil {
		if err = c.bs.Admit(id); err != nil { // the identity's own max_connections
			c.bs.Close()
			c.bs = nil
			reason = reasonUserConns
		}
	}
	if errors.Is(err, broker.ErrMaxConnections) {
		return c.refuse(c.connackCode(packet.QuotaExceeded), withReason(err, reason)) // 3.1.1: 0x03
	}
	if err != nil {
		return c.refuse(c.connackCode(packet.ServerUnavailable), err)
	}
	c.bs.Remember(cr) // a reload checks them again
	return nil
}

// connectWill checks the will: it is a publish of this identity, refused
// at CONNECT when its topic is invalid or the identity may not publish to
// it, and checked again by the broker's gate when it is sent. Read loop.
func (c *conn) connectWill(h *hello) error {
	cp := h.cp
	if !cp.WillFlag {
		return nil
	}
	var err error
	if h.willSubj, err = willSubject(cp.WillTopic); err != nil {
		if c.v != packet.V5 {
			return err // 3.1.1 has no return code for it: close [MQTT-3.1.2-?]
		}
		return c.refuse(packet.TopicNameInvalid, withReason(err, reasonWillTopic))
	}
	if !c.bs.CanPublish(h.willSubj) {
		err := fmt.Errorf("%w: will topic %q", broker.ErrPermPublish, cp.WillTopic)
		return c.refuse(c.connackCode(packet.NotAuthorized), withReason(err, reasonWillDenied))
	}
	return nil
}

// problemSettings takes what a 5.0 client's CONNECT says of the packets it
// gets, refusals included: its Maximum Packet Size and Request Problem
// Information (reason.go). Read loop.
func (c *conn) problemSettings(cp *packet.ConnectPacket) {
	if c.v != packet.V5 {
		return
	}
	if v, ok := cp.Props.MaximumPacketSize(); ok {
		c.clientMax = int(v)
	}
	if v, ok := cp.Props.RequestProblemInfo(); ok && v == 0 {
		c.noProblem = true
	}
}

// connectSettings takes the keep alive (with max_keep_alive,
// [MQTT-3.1.2-21/-22] in 5.0) and the 5.0 client's Receive Maximum and
// Topic Alias Maximum. Read loop.
func (c *conn) connectSettings(h *hello) error {
	o := &c.srv.opts
	h.ka = h.cp.KeepAlive
	if o.MaxKeepAlive > 0 && (h.ka == 0 || h.ka > o.MaxKeepAlive) {
		h.ka, h.serverKA = o.MaxKeepAlive, true
	}
	c.keepAlive = time.Duration(h.ka) * time.Second
	if c.v != packet.V5 {
		return nil
	}
	if v, ok := h.cp.Props.ReceiveMaximum(); ok {
		if v == 0 {
			return c.refuse(packet.ProtocolError, withReason(errReceiveMaxZero, reasonRecvMaxZero))
		}
		c.clientRecv = int(v)
	}
	if v, ok := h.cp.Props.TopicAliasMaximum(); ok {
		c.aliasOut = newAliasOut(v, c.srv.opts.MaxTopicAlias) // none when absent or 0 [MQTT-3.1.2-27]
	}
	return nil
}

// accept attaches the session and answers CONNACK (once the session is
// durable), then resumes what the session holds. Read loop.
func (c *conn) accept(h *hello) error {
	o := &c.srv.opts
	if err := c.srv.sharedReady(); err != nil {
		return c.refuse(c.connackCode(packet.ServerUnavailable), withReason(err, reasonStore)) // 3.1.1: 0x03
	}
	owner := ""
	if h.id != nil {
		owner = h.id.Name
	}
	s, present, err := c.srv.attach(c, h.clientID, owner, h.cp, h.cr, h.willSubj)
	if err != nil {
		code, reason := packet.NotAuthorized, reasonClientIDOwned
		if errors.Is(err, store.ErrUnavailable) {
			code, reason = packet.ServerUnavailable, reasonStore
		}
		return c.refuse(c.connackCode(code), withReason(err, reason))
	}
	c.sess = s

	ack := packet.ConnackPacket{SessionPresent: present}
	if c.v == packet.V5 {
		if h.assigned {
			ack.Props.SetAssignedClientID([]byte(h.clientID))
		}
		if h.serverKA {
			ack.Props.SetServerKeepAlive(h.ka)
		}
		if v, _ := h.cp.Props.SessionExpiryInterval(); c.srv.lowersExpiry(v) {
			// The client would otherwise believe its own value (5.0 §3.2.2.3.2).
			ack.Props.SetSessionExpiryInterval(uint32(o.SessionExpiry / time.Second))
		}
		ack.Props.SetReceiveMaximum(o.ReceiveMaximum)
		if c.aliasMax > 0 {
			ack.Props.SetTopicAliasMaximum(uint16(c.aliasMax))
		}
		ack.Props.SetMaximumPacketSize(uint32(c.maxPacket))
	}
	if err := c.sessionDurable(s); err != nil {
		return c.refuse(c.connackCode(packet.ServerUnavailable), withReason(err, reasonStore))
	}
	// CONNACK is queued, not sent, until the session is this
	// connection's: a client that has it may be sent a message at once
	// by another client's publish, which an unattached session would
	// take for one to an offline session. The read loop wakes the
	// writer when this read's packets are handled.
	c.out.Lock()
	c.out.AppendLocked(packet.AppendConnack(nil, c.v, &ack))
	c.out.Unlock()
	c.accepted.Store(true)
	s.resume(c)
	if c.v != packet.V5 {
		c.armAckWait(o.AckWait)
	}
	return nil
}

// sessionDurable waits, before CONNACK, until what CONNECT changed in the
// Store is on disk: a persistent session (created or resumed, with its
// will and expiry), or the deletion of one a clean start ended. Once a
// client has CONNACK, a crash must not lose its session. One group
// commit, on this connection's read loop only.
func (c *conn) sessionDurable(s *session) error {
	s.mu.Lock()
	persistent := s.persistent()
	s.mu.Unlock()
	if c.grouped == nil || !persistent && !c.endedStored {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.srv.b.Options().WriteDeadline+10*time.Second)
	defer cancel()
	if err := c.grouped.Sync(ctx); err != nil {
		return fmt.Errorf("mqtt: store: %w", err)
	}
	return nil
}

// authenticate asks the broker's Authenticator about the CONNECT
// credentials; the password may carry a JWT or the token (nats-server's
// MQTT rule). It also returns the credentials, which the sessions remember
// so that a reload can check them again.
func (c *conn) authenticate(cp *packet.ConnectPacket, clientID string) (*auth.Identity, *auth.Credentials, error) {
	if c.pre != nil && c.pre.Identity != nil && cp.Username == nil && cp.Password == nil {
		// Authenticated at the WebSocket handshake.
		return c.pre.Identity, c.pre.Credentials, nil
	}
	cr := &auth.Credentials{
		Conn: c.ct, RemoteAddr: c.nc.RemoteAddr(), ClientID: clientID,
		User: string(cp.Username), Password: string(cp.Password),
	}
	if cp.Username == nil && len(cp.Password) > 0 {
		cr.JWT, cr.Token = cr.Password, cr.Password
	}
	cr.TLS = transport.TLSState(c.nc)
	if c.pre != nil {
		cr.AddRequest(c.pre.Credentials) // the WebSocket upgrade request, for the Authenticator
	}
	if !c.srv.b.AuthRequired() {
		return nil, cr, nil
	}
	id, err := c.srv.b.Authenticate(context.Background(), cr)
	return id, cr, err
}

// attach finds or creates the session for clientID in the connection's
// account, taking it over from another connection ([MQTT-3.1.4-2/-3]).
// Sessions and client identifiers belong to an account; within it a
// session belongs to the identity that created it: another identity is
// refused, never given the session (SPEC; checklist row 8). A session
// found gets the connecting identity and its current permissions
// (subscriptions they forbid are dropped).
func (srv *server) attach(c *conn, clientID, owner string, cp *packet.ConnectPacket, cr *auth.Credentials, willSubj []byte) (*session, bool, error) {
	key := sessionKey(c.bs.Account(), clientID)
	id := c.bs.Snapshot().Identity
	if err := srv.claim(key, owner); err != nil { // shared by several brokers (shared.go)
		return nil, false, err
	}
	srv.mu.Lock()
	old := srv.sessions[key]
	if old != nil && old.owner != owner {
		srv.mu.Unlock()
		return nil, false, fmt.Errorf("mqtt: client id %q belongs to another identity", clientID)
	}
	srv.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		prev := old.conn
		old.setConnLocked(nil)
		c.endedStored = cp.CleanStart && old.persistent()
		old.mu.Unlock()
		if prev != nil {
			prev.takenOver.Store(true) // its will is replaced by the new CONNECT's
			prev.Close(fmt.Errorf("%w: session taken over", packet.SessionTakenOver))
		}
		if cp.CleanStart {
			srv.endSession(old)
			old = nil
		}
	}
	present := old != nil
	s := old
	if s == nil {
		s = &session{srv: srv, id: clientID, key: key, owner: owner}
		// The session subscribes as the identity that created it (its
		// permissions and account).
		bs, err := srv.b.Connect(s, id, broker.ConnectOptions{Transport: "mqtt-session", ConnType: c.ct, Name: clientID, Remote: "session", Detached: true})
		if err != nil {
			return nil, false, err
		}
		s.bs = bs
		srv.mu.Lock()
		srv.sessions[key] = s
		srv.mu.Unlock()
	} else if err := s.reidentify(id); err != nil {
		srv.endSession(s)
		return nil, false, err
	}
	s.bs.Remember(cr)
	s.mu.Lock()
	s.expiry = sessionExpiry(c, cp)
	s.will = c.willFrom(cp, willSubj)
	s.saveLocked()
	s.mu.Unlock()
	return s, present, nil
}

// sessionKey is a session's key in the server's map and in the Store: the
// client identifier, prefixed with the account outside the global account
// (the form of broker.RetainedKey).
func sessionKey(account, clientID string) string {
	return broker.RetainedKey(account, clientID)
}

// sessionExpiry is how long the session outlives the connection: 3.1.1
// clean session ends with it, persistent never; 5.0 Session Expiry
// Interval, bounded by session_expiry.
func sessionExpiry(c *conn, cp *packet.ConnectPacket) time.Duration {
	if c.v != packet.V5 {
		if cp.CleanStart {
			return 0
		}
		return -1
	}
	v, _ := cp.Props.SessionExpiryInterval()
	return c.srv.boundExpiry(v)
}

// boundExpiry is a 5.0 Session Expiry Interval of v seconds (0xFFFFFFFF:
// never, -1) within session_expiry.
func (srv *server) boundExpiry(v uint32) time.Duration {
	d := time.Duration(v) * time.Second
	if v == 0xFFFFFFFF {
		d = -1
	}
	if srv.lowersExpiry(v) {
		d = srv.opts.SessionExpiry
	}
	return d
}

// lowersExpiry reports whether session_expiry lowers a 5.0 Session Expiry
// Interval of v seconds (CONNACK then says what applies).
func (srv *server) lowersExpiry(v uint32) bool {
	lim := srv.opts.SessionExpiry
	return lim > 0 && (v == 0xFFFFFFFF || time.Duration(v)*time.Second > lim)
}

// willSubject maps and checks a will topic: a valid topic name that is a
// valid NATS subject (no wildcards, no spaces).
func willSubject(topic []byte) ([]byte, error) {
	if !packet.ValidTopicName(topic) {
		return nil, fmt.Errorf("%w: will topic %q", packet.TopicNameInvalid, topic)
	}
	subj, err := TopicToSubject(nil, topic, false)
	if err != nil || !subject.ValidLiteral(subj) {
		return nil, fmt.Errorf("%w: will topic %q", packet.TopicNameInvalid, topic)
	}
	return subj, nil
}

// willFrom builds the session's will from CONNECT; subj is its checked
// subject.
func (c *conn) willFrom(cp *packet.ConnectPacket, subj []byte) *will {
	if !cp.WillFlag {
		return nil
	}
	m := broker.Message{Subject: subj, Payload: append([]byte(nil), cp.WillPayload...), QoS: cp.WillQoS, Retain: cp.WillRetain, MQTT: true}
	w := &will{m: m}
	if c.v == packet.V5 {
		if d, ok := cp.WillProps.WillDelayInterval(); ok {
			w.delay = time.Duration(d) * time.Second
		}
		if cp.WillProps.HasMessageProps() {
			// Kept as sent; its Message Expiry counts from when the will
			// is published (5.0 §3.1.3.2.4): publishWill.
			w.props = new(packet.Properties)
			cp.WillProps.CopyMessageProps(w.props)
		}
	}
	return w
}
