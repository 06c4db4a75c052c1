package leafnode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/busbar/busbar/internal/wsframe"
	"github.com/busbar/busbar/transport"
)

// WebSocket leaf links (ws:// and wss:// remotes). A nats-server hub
// takes leaf connections on its `websocket {}` port: the upgrade request's
// path ends in "/leafnode" (anything else is a client), and from then on
// the leaf protocol travels in binary frames. wsConn turns the framed
// connection back into a byte stream, so the rest of the link sees a
// plain net.Conn. The framing is the client end of an internal/wsframe
// codec, the one the websocket transport's server end uses.
//
// Frames from the leaf are masked, as RFC 6455 wants of a client, unless
// the remote sets ws_no_masking and the hub accepts it (it answers the
// Nats-No-Masking request header with the same header). ws_compression
// asks for permessage-deflate without context takeover either way, which
// is what nats-server answers; a hub that keeps its own context is read
// with it.

const (
	wsLeafPath        = "leafnode"
	wsNoMaskingHeader = "Nats-No-Masking"
	wsNoMaskingValue  = "true"
)

func isWS(u *url.URL) bool { return u.Scheme == "ws" || u.Scheme == "wss" }

// wsUpgrade sends the upgrade request for u on nc (TCP, or TLS already
// for wss://) and returns the framed connection. The whole exchange is
// bounded by the remote's first_info_timeout, as nats-server does.
func (l *link) wsUpgrade(nc net.Conn, u *url.URL) (*wsConn, error) {
	r := &l.r
	req := *u
	req.User = nil
	req.Path, req.RawPath = path.Join("/", u.Path, wsLeafPath), ""
	noMasking := false
	d := ws.Dialer{
		OnHeader: func(k, v []byte) error {
			if strings.EqualFold(string(k), wsNoMaskingHeader) && string(v) == wsNoMaskingValue {
				noMasking = true
			}
			return nil
		},
	}
	if r.WSNoMasking {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{wsNoMaskingHeader: {wsNoMaskingValue}})
	}
	if r.WSCompression {
		p := wsflate.Parameters{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
		d.Extensions = []httphead.Option{p.Option()}
	}
	_ = nc.SetDeadline(time.Now().Add(r.FirstInfoTimeout))
	br, hs, err := d.Upgrade(nc, &req)
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) && int(se) == http.StatusNotFound {
			return nil, fmt.Errorf("%w %s: %w (is it the hub's websocket port?)", ErrWebSocket, redact(&req), err)
		}
		return nil, fmt.Errorf("%w %s: %w", ErrWebSocket, redact(&req), err)
	}
	cfg := wsframe.Config{Client: true, NoMasking: r.WSNoMasking && noMasking}
	for _, e := range hs.Extensions {
		if string(e.Name) != wsflate.ExtensionName {
			continue
		}
		// The offer said client_no_context_takeover, so this end never
		// keeps its context; the hub keeps its own unless it answered
		// server_no_context_takeover, as it must have (RFC 7692 §7.1.1.1).
		var p wsflate.Parameters
		if err := p.Parse(e); err != nil || (p.ClientMaxWindowBits.Defined() && p.ClientMaxWindowBits < 15) {
			return nil, fmt.Errorf("%w %s: the hub's permessage-deflate parameters %q are not supported (turn ws_compression off)", ErrWebSocket, redact(&req), e.String())
		}
		cfg.Deflate, cfg.ReadTakeover = true, !p.ServerNoContextTakeover
	}
	var src io.Reader = nc
	if br != nil {
		pre, _ := br.Peek(br.Buffered())
		src = io.MultiReader(bytes.NewReader(bytes.Clone(pre)), nc)
		ws.PutReader(br)
	}
	c := &wsConn{nc: nc}
	cfg.ReadEnd = c.readEnd
	c.fc = wsframe.New(src, transport.ConnSink(nc), cfg)
	l.log.Debug("leafnode: websocket upgraded", "url", redact(u), "compression", cfg.Deflate, "masking", !cfg.NoMasking)
	return c, nil
}

// wsConn is a client WebSocket connection seen as a byte stream. Read is
// used by the link's read loop only; writes (the outbound writer's
// batches, the read loop's pongs and Close) may come from any goroutine
// and are serialized by the codec.
type wsConn struct {
	nc   net.Conn
	fc   *wsframe.Codec
	once sync.Once
}

var (
	_ net.Conn               = (*wsConn)(nil)
	_ transport.SinkProvider = (*wsConn)(nil)
)

// Read returns message bytes. A framing error from the hub is answered
// with a close frame carrying its code. Read loop only.
func (c *wsConn) Read(p []byte) (int, error) { return c.fc.Read(p) }

// readEnd says why the read side ended (wsframe.Config.ReadEnd): the
// hub's close frame (the codec answered it) or its framing error
// (answered here). Read loop only.
func (c *wsConn) readEnd(err error) error {
	var ce *wsframe.CloseError
	switch {
	case !errors.As(err, &ce):
		return err
	case ce.Remote:
		return fmt.Errorf("%w: %w", errWSClosed, err)
	}
	_, _ = c.fc.WriteClose(ce.Code, ce.Reason, true)
	return fmt.Errorf("%w: %w", errWSProtocol, err)
}

// Write sends p as one binary frame. Any goroutine.
func (c *wsConn) Write(p []byte) (int, error) { return c.fc.Write(p) }

// Sink frames each outbound batch as one message (transport.SinkProvider):
// masked frames are XORed in a reused scratch copy (payloads are shared),
// unmasked ones go out by writev.
func (c *wsConn) Sink() transport.Sink { return c.fc }

// Close sends a close frame (1000) unless a writer is stuck on the
// socket, then closes it. Any goroutine; idempotent.
func (c *wsConn) Close() error {
	var err error
	c.once.Do(func() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.fc.WriteClose(wsframe.CloseNormal, "", false)
		err = c.nc.Close()
	})
	return err
}

// LocalAddr, RemoteAddr and the deadlines are the underlying connection's.
func (c *wsConn) LocalAddr() net.Addr                { return c.nc.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.nc.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.nc.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.nc.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }
