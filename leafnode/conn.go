package leafnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/transport"

	"github.com/busbar/busbar/internal/wire"
)

// serverInfo is the part of the hub's INFO a leaf uses.
type serverInfo struct {
	ID            string                  `json:"server_id"`
	Name          string                  `json:"server_name"`
	Version       string                  `json:"version"`
	Headers       bool                    `json:"headers"`
	TLSRequired   bool                    `json:"tls_required"`
	MaxPayload    int                     `json:"max_payload"`
	Nonce         string                  `json:"nonce"`
	CID           uint64                  `json:"client_id"`
	Cluster       string                  `json:"cluster"`
	LeafNodeURLs  []string                `json:"leafnode_urls"`
	WSConnectURLs []string                `json:"ws_connect_urls"`
	ConnectURLs   []string                `json:"connect_urls"`
	InfoOnConnect bool                    `json:"info_on_connect"`
	ConnectInfo   bool                    `json:"connect_info"`
	RemoteAccount string                  `json:"remote_account"`
	Import        *auth.SubjectPermission `json:"import"`
	Export        *auth.SubjectPermission `json:"export"`
}

var (
	pingLine = []byte("PING\r\n")
	pongLine = []byte("PONG\r\n")
	crlf     = []byte("\r\n")
)

// conn is one connection of a link to a hub: the leaf protocol on a
// transport.Conn (read loop on the link's run goroutine, outbound queue
// and writer, ping timer).
type conn struct {
	tc   transport.Conn
	l    *link
	b    *broker.Broker
	nc   net.Conn            // the dialled connection, until serve hands it to tc
	out  *transport.Outbound // tc.Out(), for the forwarding path
	sess *broker.Session
	p    *parser
	info serverInfo
	url  *url.URL

	hdrs  bool                             // the hub takes headers (HMSG)
	perms atomic.Pointer[auth.Permissions] // Subscribe: what may come from the hub; Publish: what may go to it

	// Read loop state.
	rest   []byte // read past the hub's INFO during the handshake
	batch  broker.Batch
	msg    broker.Message
	subs   map[string]*broker.Subscription // the hub's interest, by "subject" or "subject queue"
	up     bool                            // the first PONG arrived
	ready  atomic.Bool                     // local interest flows (the hub's permissions are known)
	upFlag atomic.Bool                     // up, for other goroutines

	hubErr atomic.Pointer[string] // the last -ERR text
	start  time.Time
	subsN  atomic.Int64
}

var (
	_ broker.Forwarder  = (*conn)(nil)
	_ transport.Handler = (*conn)(nil)
)

// connect makes one connection to u and serves it until it ends. up
// reports whether the hub accepted the link (answered our first PING).
func (l *link) connect(ctx context.Context, u *url.URL) (up bool, err error) {
	d := net.Dialer{Timeout: l.r.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errDial, err)
	}
	c := &conn{l: l, b: l.b, nc: nc, url: u, start: time.Now()}
	if isWS(u) {
		if err := c.wsDial(); err != nil {
			_ = c.nc.Close()
			return false, err
		}
	}
	if err := c.handshake(ctx); err != nil {
		_ = c.nc.Close()
		return false, err
	}
	return c.serve()
}

// tlsConfig is the remote's client TLS configuration for host.
func (l *link) tlsConfig(host string) *tls.Config {
	var cfg *tls.Config
	if l.r.TLS != nil {
		cfg = l.r.TLS.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg.ServerName = host
	}
	return cfg
}

func (c *conn) tlsUpgrade() error {
	tc := tls.Client(c.nc, c.l.tlsConfig(c.url.Hostname()))
	_ = tc.SetDeadline(time.Now().Add(c.l.r.TLSTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("%w: %w", errTLS, err)
	}
	_ = tc.SetDeadline(time.Time{})
	c.nc = tc
	return nil
}

// handshake reads the hub's INFO, upgrades to TLS when asked, and
// prepares CONNECT. Bytes after the INFO line are kept for the parser.
func (c *conn) handshake(ctx context.Context) error {
	r := &c.l.r
	wantTLS := c.url.Scheme == "tls" || r.TLS != nil
	ws := isWS(c.url) // TLS, if any, is under the websocket (wsDial)
	if wantTLS && r.TLSHandshakeFirst && !ws {
		if err := c.tlsUpgrade(); err != nil {
			return err
		}
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(r.FirstInfoTimeout))
	line, rest, err := readLine(c.nc, c.b.Options().MaxControlLine*16)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w within first_info_timeout (%v): is the URL a leafnode port?", errFirstInfo, r.FirstInfoTimeout)
		}
		return fmt.Errorf("%w: %w", errFirstInfo, err)
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	op, arg := wire.SplitOp(line)
	if !strings.EqualFold(string(op), "INFO") {
		return fmt.Errorf("%w: first line is %q", ErrWrongPort, truncate(line))
	}
	if err := json.Unmarshal(arg, &c.info); err != nil {
		return fmt.Errorf("%w: bad INFO: %w", ErrWrongPort, err)
	}
	if len(c.info.LeafNodeURLs) == 0 && !c.info.InfoOnConnect && len(c.info.ConnectURLs) > 0 {
		return ErrWrongPort // a client port (it advertises client URLs, not leafnode ones)
	}
	if (wantTLS || c.info.TLSRequired) && !r.TLSHandshakeFirst && !ws {
		if len(rest) > 0 {
			return fmt.Errorf("%w: data after INFO before the TLS handshake", errParse)
		}
		if err := c.tlsUpgrade(); err != nil {
			return err
		}
	}
	c.rest = rest
	c.hdrs = c.info.Headers
	c.setPerms(c.info.Import, c.info.Export)
	c.l.addURLs(c.discovered(&c.info), c.url)
	return nil
}

// discovered are the hub cluster's URLs of the kind this link uses.
func (c *conn) discovered(in *serverInfo) []string {
	if isWS(c.url) {
		return in.WSConnectURLs
	}
	return in.LeafNodeURLs
}

// wsDial makes c.nc a WebSocket leaf connection (TLS first for wss:// or
// a remote with TLS, as nats-server does).
func (c *conn) wsDial() error {
	if c.url.Scheme == "wss" || c.l.r.TLS != nil {
		if err := c.tlsUpgrade(); err != nil {
			return err
		}
	}
	wc, err := c.l.wsUpgrade(c.nc, c.url)
	if err != nil {
		return err
	}
	c.nc = wc
	return nil
}

// setPerms merges the hub's import/export permissions with the remote's
// deny lists, as a nats-server leaf does.
func (c *conn) setPerms(imp, exp *auth.SubjectPermission) {
	r := &c.l.r
	if imp == nil && exp == nil && len(r.DenyImports) == 0 && len(r.DenyExports) == 0 {
		c.perms.Store(nil)
		return
	}
	p := &auth.Permissions{Subscribe: &auth.SubjectPermission{}, Publish: &auth.SubjectPermission{}}
	if imp != nil {
		p.Subscribe.Allow = imp.Allow
		p.Subscribe.Deny = append(p.Subscribe.Deny, imp.Deny...)
	}
	p.Subscribe.Deny = append(p.Subscribe.Deny, r.DenyImports...)
	if exp != nil {
		p.Publish.Allow = exp.Allow
		p.Publish.Deny = append(p.Publish.Deny, exp.Deny...)
	}
	p.Publish.Deny = append(p.Publish.Deny, r.DenyExports...)
	c.perms.Store(p)
}

// readLine reads up to the first '\n' (at most max bytes): the line
// without CRLF, and what was read past it.
func readLine(nc net.Conn, max int) (line, rest []byte, err error) {
	buf := make([]byte, 0, 4096)
	for {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return bytes.TrimRight(buf[:i], "\r"), buf[i+1:], nil
		}
		if len(buf) > max {
			return nil, nil, fmt.Errorf("%w: INFO longer than %d bytes", errParse, max)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, len(buf))...)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			return nil, nil, err
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// serve sends CONNECT and the local interest, then reads until the
// connection ends.
func (c *conn) serve() (up bool, err error) {
	l, r := c.l, &c.l.r
	ci := connectInfo{
		Version: broker.Version, ID: c.b.ID(), Name: l.name, Headers: c.hdrs,
		DenyPub: r.DenyImports, RemoteAccount: accountName(r.Account), Proto: protoVersion,
	}
	user, pass, hasPass := r.User, r.Password, r.Password != ""
	if ui := c.url.User; ui != nil {
		user = ui.Username()
		pass, hasPass = ui.Password()
	}
	if err := sign(&ci, r, user, pass, hasPass, []byte(c.info.Nonce)); err != nil {
		_ = c.nc.Close()
		return false, err
	}
	opts := c.b.Options()
	maxPayload := opts.MaxPayload
	if c.info.MaxPayload > maxPayload {
		maxPayload = c.info.MaxPayload
	}
	// A leaf link's lines carry other leaves' subjects (an MQTT topic up
	// to 64 KiB) and queue lists: nats-server takes 16 times
	// max_control_line on one, and so does busbar.
	c.p = newParser(c, 16*max(opts.MaxControlLine, broker.DefaultMaxControlLine), maxPayload)
	// No pending limit on a leaf link, as nats-server.
	c.tc.Init(c.b, c.nc, c, transport.ConnConfig{WriteDeadline: opts.WriteDeadline, Ping: pingLine, Stale: ErrStale})
	c.out = c.tc.Out()
	// The link's identity: the bound local account, and deny_imports as
	// its publish deny list, so the broker's publish gate drops what the
	// remote may not bring in (Session.PublishRemote).
	id := &auth.Identity{Name: "leafnode:" + c.info.Name, Account: c.l.r.Account}
	if len(c.l.r.DenyImports) > 0 {
		id.Perms = &auth.Permissions{Publish: &auth.SubjectPermission{Deny: c.l.r.DenyImports}}
	}
	c.sess, err = c.b.Connect(c, id, broker.ConnectOptions{
		Transport: "leafnode", ConnType: auth.ConnLeafnode, Name: c.info.Name,
		Remote: c.nc.RemoteAddr().String(), Detached: true,
	})
	if err != nil {
		_ = c.nc.Close()
		return false, err
	}
	c.out.Write(appendConnect(nil, &ci))
	c.tc.Start(c.nc)

	// From here on interest changes reach this connection; Each then
	// sends the full set while changes wait (see broker.InterestWatch).
	l.mu.Lock()
	l.cur = c
	l.mu.Unlock()
	if !c.info.InfoOnConnect {
		c.startInterest() // an old hub: no INFO with our permissions comes
	}
	c.tc.SendPing()
	c.tc.StartPing()

	if rest := c.rest; len(rest) > 0 { // what followed the INFO
		c.rest = nil
		if _, _, err := c.Received(rest); err != nil {
			c.Ended(err)
			return c.up, c.reason(err)
		}
	}
	err = c.tc.Serve(false)
	return c.up, c.reason(err)
}

func accountName(a string) string {
	if a == "" {
		return broker.GlobalAccount
	}
	return a
}

// startInterest sends the loop detection subject and all local interest,
// and from then on its changes. It waits for the hub's INFO after CONNECT
// (or its first PONG, which follows that INFO), which carries the
// permissions: a subscription they forbid makes the hub close the link.
// Read loop only.
func (c *conn) startInterest() {
	if c.ready.Swap(true) {
		return
	}
	// A fresh subject per connection: after a failover the next hub may
	// still hold the last connection's one (from the dead hub, over a
	// route) and send it back, which is stale interest, not a loop.
	c.l.lds = "$LDS." + randomID()
	c.sendLine(appendSub(nil, []byte(c.l.lds), nil, 1))
	c.l.watch.Each(c.sendInterest)
}

// sendInterest sends one aggregated interest change (broker.InterestFunc;
// called with the router's lock held).
func (c *conn) sendInterest(subject, queue []byte, n int) {
	if !c.ready.Load() {
		return // startInterest sends the full set
	}
	if p := c.perms.Load(); p != nil && !p.CanSubscribe(subject, queue) {
		return // the hub would close the link over it
	}
	if len(subject)+len(queue)+20 > hubMaxLine {
		c.l.stats.tooLong.Add(1)
		return // so would it over the line's length: this interest stays local
	}
	var buf [256]byte
	if n > 0 {
		c.sendLine(appendSub(buf[:0], subject, queue, n))
	} else {
		c.sendLine(appendUnsub(buf[:0], subject, queue))
	}
}

func (c *conn) sendLine(b []byte) {
	c.out.Write(b)
}

// Received parses what the read loop read (transport.Handler). Read loop.
func (c *conn) Received(b []byte) (int, int, error) {
	err := c.p.parse(b)
	c.batch.Flush()
	return len(b), 0, err
}

// Closing logs a failed write (transport.Handler); a leaf link has no
// last words for the hub.
func (c *conn) Closing(reason error) {
	var we *broker.WriteError
	if errors.As(reason, &we) {
		c.l.log.Warn("leafnode: write failed, closing", "err", we.Err)
	}
}

// Ended closes the connection and releases what it held once the read
// loop stopped (transport.Handler). Read loop.
func (c *conn) Ended(err error) {
	c.Close(err)
	c.l.mu.Lock()
	if c.l.cur == c {
		c.l.cur = nil
	}
	c.l.mu.Unlock()
	c.sess.Close() // drops the hub's interest from the router
	<-c.out.Done()
}

// reason is why the connection ended: the first Close reason, with the
// hub's -ERR text when it sent one.
func (c *conn) reason(fallback error) error {
	err := fallback
	if r := c.tc.Reason(); r != nil {
		err = r
	}
	if h := c.hubErr.Load(); h != nil {
		return fmt.Errorf("%w: -ERR %s (%w)", ErrHubRefused, *h, err)
	}
	return err
}

// --- broker.Client ---

// Deliver is used only by paths that do not know Forwarders (it sends
// the message as for one subscription).
func (c *conn) Deliver(sub *broker.Subscription, m *broker.Message) bool {
	if len(sub.Queue) > 0 {
		q := [1][]byte{sub.Queue}
		return c.Forward(m, false, q[:])
	}
	return c.Forward(m, true, nil)
}

// Wake flushes the writer once per publish batch.
func (c *conn) Wake() { c.out.Wake() }

// Close ends the connection from any goroutine (transport.Conn.Close:
// the first reason wins).
func (c *conn) Close(reason error) { c.tc.Close(reason) }

// hubMaxLine is the longest protocol line sent to the hub: what
// nats-server takes on a leaf connection with its default
// max_control_line (16 times it, 64 KiB). A longer one makes the hub
// close the link ("Maximum Control Line Exceeded").
const hubMaxLine = 16 * broker.DefaultMaxControlLine

// Forward writes one LMSG/HMSG for m (broker.Forwarder). Publisher's
// goroutine; allocates nothing.
func (c *conn) Forward(m *broker.Message, plain bool, queues [][]byte) bool {
	if p := c.perms.Load(); p != nil && p.Publish != nil && !p.CanPublish(m.Subject) {
		return true // deny_exports, or the hub's export permissions
	}
	lineLen := msgLineLen(m.Subject, m.Reply, queues)
	if lineLen > hubMaxLine {
		// The hub would close the link over the line (an MQTT topic can be
		// 64 KiB; a NATS client's subject is bounded by max_control_line
		// anyway): the message stays here.
		c.l.stats.tooLong.Add(1)
		return true
	}
	hdr := m.Header
	if hdr == nil && m.MQTT {
		if id := broker.LogIDOf(m); id != "" && m.QoS > 0 {
			hdr = mqttIDHeader(m.QoS, id) // hub mode only: allocates
		} else {
			hdr = mqttHeaders[min(m.QoS, 2)]
		}
	}
	if !c.hdrs {
		hdr = nil
	}
	hl := -1
	if hdr != nil {
		hl = len(hdr)
	}
	size := len(hdr) + len(m.Payload)
	o := c.out
	o.Lock()
	if o.ClosedLocked() {
		o.Unlock()
		return true
	}
	buf := o.HeadroomLocked(lineLen)
	buf = appendMsgLine(buf, m.Subject, m.Reply, queues, hl, size)
	o.CommitLocked(buf)
	if hdr != nil {
		o.AppendLocked(hdr)
	}
	o.AppendPayloadLocked(m) // by reference when large and shared
	o.AppendLocked(crlf)
	over := o.OverLocked()
	o.Unlock()
	c.l.stats.outMsgs.Add(1)
	c.l.stats.outBytes.Add(int64(size))
	return !over
}

// --- parser callbacks (read loop) ---

func (c *conn) onPing() error {
	c.out.Write(pongLine)
	return nil
}

func (c *conn) onPong() error {
	c.tc.Ponged()
	c.startInterest()
	if !c.up {
		c.up = true
		c.upFlag.Store(true)
		c.l.log.Info("leafnode: connected", "url", redact(c.url), "hub", c.info.Name, "hub_id", c.info.ID)
	}
	return nil
}

func (c *conn) onInfo(arg []byte) error {
	var in serverInfo
	if err := json.Unmarshal(arg, &in); err != nil {
		return fmt.Errorf("%w: bad INFO: %w", errParse, err)
	}
	c.l.addURLs(c.discovered(&in), c.url)
	if in.Import != nil || in.Export != nil {
		c.setPerms(in.Import, in.Export)
	}
	if in.ConnectInfo {
		c.startInterest()
	}
	return nil
}

// minVersionDelay is how long the link waits after the hub's minimum
// version refusal (nats-server's leafNodeMinVersionReconnectDelay).
const minVersionDelay = 5 * time.Second

// onErr logs the hub's -ERR; the hub closes the link after most. A loop,
// a permissions violation, a duplicate name or cluster name delays the
// next attempt by ErrorDelay (30 s), a minimum version refusal by 5 s, as
// in nats-server.
func (c *conn) onErr(arg []byte) error {
	text := strings.Trim(string(arg), "' ")
	c.hubErr.Store(&text)
	log := c.l.log.With("url", redact(c.url), "hub", c.info.Name)
	switch {
	case strings.Contains(text, "Loop detected"):
		c.l.delay.Store(int64(c.l.svc.opts.ErrorDelay))
		log.Error("leafnode: the hub detected a loop (this broker reaches the hub twice in one account?)", "err", text)
	case strings.Contains(text, "Permissions Violation"):
		c.l.delay.Store(int64(c.l.svc.opts.ErrorDelay))
		log.Error("leafnode: the hub refused a subscription or publish: check its leafnode permissions or use deny_imports/deny_exports", "err", text)
	case strings.Contains(text, "Duplicate Remote LeafNode Connection"):
		c.l.delay.Store(int64(c.l.svc.opts.ErrorDelay))
		log.Error("leafnode: the hub replaced this link by another leaf with the same name: give each instance its own server_name", "err", text, "name", c.l.name)
	case strings.Contains(text, "remote leafnode has same cluster name"):
		c.l.delay.Store(int64(c.l.svc.opts.ErrorDelay))
		log.Error("leafnode: the hub refused the link: this broker's cluster name is the hub's (give the leaf another, or none)", "err", text)
	case strings.Contains(text, "connection rejected since minimum version required is"):
		c.l.delay.Store(int64(min(c.l.svc.opts.ErrorDelay, minVersionDelay)))
		log.Error("leafnode: the hub requires a newer leaf node version (leafnodes { min_version } on the hub)", "err", text)
	case strings.Contains(text, "Authorization Violation"), strings.Contains(text, "Authentication"):
		log.Error("leafnode: the hub refused the credentials: check user/password, nkey or credentials of this remote", "err", text)
	default:
		log.Error("leafnode: the hub reported an error", "err", text)
	}
	return nil
}

func subKey(buf []byte, subject, queue []byte) []byte {
	buf = append(buf[:0], subject...)
	if len(queue) > 0 {
		buf = append(buf, ' ')
		buf = append(buf, queue...)
	}
	return buf
}

// onSub records the hub's interest (LS+) as a subscription of the link.
func (c *conn) onSub(subject, queue []byte, weight int) error {
	if string(subject) == c.l.lds {
		c.l.delay.Store(int64(c.l.svc.opts.ErrorDelay))
		c.l.log.Error("leafnode: loop detected: the hub sent back this link's own loop detection subject (two remotes to one hub cluster in one account?)", "subject", string(subject))
		return ErrLoop
	}
	if bytes.HasPrefix(subject, []byte("$LDS.")) {
		return nil // another server's loop detection subject: nothing publishes there
	}
	if p := c.perms.Load(); p != nil && p.Publish != nil && isLiteral(subject) && !p.CanPublish(subject) {
		return nil // never sent there anyway
	}
	var kb [128]byte
	key := subKey(kb[:0], subject, queue)
	if s, ok := c.subs[string(key)]; ok {
		s.Opaque = weight
		return nil
	}
	s := &broker.Subscription{Subject: clone(subject), Client: c, Opaque: weight}
	if len(queue) > 0 {
		s.Queue = clone(queue)
	}
	if err := c.sess.Subscribe(s); err != nil {
		c.l.log.Warn("leafnode: the hub's interest was not recorded", "subject", string(subject), "err", err)
		return nil
	}
	if c.subs == nil {
		c.subs = make(map[string]*broker.Subscription)
	}
	c.subs[string(key)] = s
	c.subsN.Store(int64(len(c.subs)))
	return nil
}

func (c *conn) onUnsub(subject, queue []byte) error {
	var kb [128]byte
	key := subKey(kb[:0], subject, queue)
	s, ok := c.subs[string(key)]
	if !ok {
		return nil
	}
	delete(c.subs, string(key))
	c.subsN.Store(int64(len(c.subs)))
	c.sess.Unsubscribe(s)
	return nil
}

// jsAckDeliver is the index of the '@' in a "$JS.ACK.<stream>.<consumer>.
// <delivered>.<sseq>.<cseq>.<tm>.<pending>@<subject>" reply (the first '@'
// after the eighth dot: stream and consumer names may hold '@'), or -1.
func jsAckDeliver(reply []byte) int {
	if !bytes.HasPrefix(reply, []byte("$JS.ACK.")) {
		return -1
	}
	dots := 0
	for i, b := range reply {
		switch b {
		case '.':
			dots++
		case '@':
			if dots >= 8 && i < len(reply)-1 {
				return i
			}
		}
	}
	return -1
}

func isLiteral(s []byte) bool {
	for i, ch := range s {
		if (ch == '*' || ch == '>') && (i == 0 || s[i-1] == '.') && (i == len(s)-1 || s[i+1] == '.') {
			return false
		}
	}
	return true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// onMsg routes a message from the hub to local subscribers only.
func (c *conn) onMsg(subject, reply []byte, queues [][]byte, hdrLen int, msg []byte) error {
	c.l.stats.inMsgs.Add(1)
	c.l.stats.inBytes.Add(int64(len(msg)))
	m := &c.msg
	*m = broker.Message{Subject: subject, Reply: reply, Payload: msg}
	if i := jsAckDeliver(reply); i >= 0 {
		// A JetStream push delivery: routed on subject (the consumer's
		// deliver subject), seen by the client on the stream subject the
		// hub put after the '@' of the ack reply.
		m.Reply, m.Ext = reply[:i], broker.DeliverAs(clone(reply[i+1:]))
	}
	if hdrLen >= 0 {
		m.Header, m.Payload = msg[:hdrLen:hdrLen], msg[hdrLen:]
		if q, id, only, ok := mqttHeader(m.Header); ok {
			m.MQTT, m.QoS = true, q
			if len(id) > 0 && m.Ext == nil {
				m.Ext = broker.LogID(id)
			}
			if only {
				m.Header = nil
			}
		}
	}
	m.Borrow()
	c.sess.CountIn(len(msg))
	_, _ = c.sess.PublishRemote(&c.batch, m, queues) // ErrPermPublish: deny_imports, dropped
	return nil
}

// --- observability ---

// snapshot describes the connection for Leafz.
func (c *conn) snapshot() LeafInfo {
	host, port, _ := net.SplitHostPort(c.tc.NetConn().RemoteAddr().String())
	var p int
	fmt.Sscan(port, &p)
	return LeafInfo{
		ID: c.sess.ID(), Name: c.info.Name, IsSpoke: true, Account: accountName(c.l.r.Account),
		IP: host, Port: p, RTT: c.tc.RTT().String(),
		Subs: uint32(c.subsN.Load()),
	}
}
