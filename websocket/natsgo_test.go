package websocket_test

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// TestNATSGoOverWebSocket: nats.go's ws:// and a TCP client exchange
// messages both ways, requests included, small and large payloads.
func TestNATSGoOverWebSocket(t *testing.T) {
	for _, compress := range []bool{false, true} {
		name := "plain"
		if compress {
			name = "compressed"
		}
		t.Run(name, func(t *testing.T) {
			e := start(t, broker.Options{}, websocket.Options{Compression: compress})
			wsc := connect(t, e.wsURL(), nats.Compression(compress))
			tcp := connect(t, e.natsURL())

			fromWS, err := tcp.SubscribeSync("to.tcp")
			require.NoError(t, err)
			fromTCP, err := wsc.SubscribeSync("to.ws.>")
			require.NoError(t, err)
			require.NoError(t, wsc.Flush())
			require.NoError(t, tcp.Flush())

			big := bytes.Repeat([]byte("0123456789abcdef"), 40<<10/16) // 40 KiB: several frames and reads
			for i, p := range [][]byte{[]byte("hello"), big, {}} {
				require.NoError(t, wsc.Publish("to.tcp", p))
				m, err := fromWS.NextMsg(3 * time.Second)
				require.NoError(t, err, "message %d from ws", i)
				require.Equal(t, p, m.Data)

				require.NoError(t, tcp.Publish("to.ws.x", p))
				m, err = fromTCP.NextMsg(3 * time.Second)
				require.NoError(t, err, "message %d to ws", i)
				require.Equal(t, p, m.Data)
			}

			// Request/reply with the responder over WebSocket.
			_, err = wsc.Subscribe("svc", func(m *nats.Msg) { _ = m.Respond(append([]byte("re:"), m.Data...)) })
			require.NoError(t, err)
			require.NoError(t, wsc.Flush())
			reply, err := tcp.Request("svc", []byte("q"), 3*time.Second)
			require.NoError(t, err)
			require.Equal(t, "re:q", string(reply.Data))

			// Headers travel.
			hm := nats.NewMsg("to.tcp")
			hm.Header.Set("K", "v")
			hm.Data = []byte("h")
			require.NoError(t, wsc.PublishMsg(hm))
			m, err := fromWS.NextMsg(3 * time.Second)
			require.NoError(t, err)
			require.Equal(t, "v", m.Header.Get("K"))

			// A burst from TCP reaches the WebSocket subscriber in order.
			const n = 2000
			for i := range n {
				require.NoError(t, tcp.Publish("to.ws.burst", []byte{byte(i), byte(i >> 8)}))
			}
			for i := range n {
				m, err := fromTCP.NextMsg(3 * time.Second)
				require.NoError(t, err)
				require.Equal(t, []byte{byte(i), byte(i >> 8)}, m.Data)
			}
		})
	}
}

// TestWebSocketRawFrames: several ops in one frame, one op across
// frames (fragmented and not), text frames, ping answered with pong.
func TestWebSocketRawFrames(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{})
	tcp := connect(t, e.natsURL())
	sub, err := tcp.SubscribeSync("raw.>")
	require.NoError(t, err)
	require.NoError(t, tcp.Flush())

	r := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	op, info := readFrame(t, r.br)
	require.Equal(t, byte(0x2), op, "binary frames")
	require.True(t, strings.HasPrefix(string(info), "INFO {"), "%q", info)

	var in []byte
	in = append(in, frame(0x1, true, []byte("CONNECT {}\r\nPUB raw.a 1\r\na\r\nPUB raw.b 1\r\nb\r\n"))...) // text, 3 ops
	in = append(in, frame(0x2, true, []byte("PUB raw.c 5\r\nhel"))...)                                     // an op across frames
	in = append(in, frame(0x2, true, []byte("lo\r\n"))...)
	in = append(in, frame(0x2, false, []byte("PUB raw.d 2\r"))...) // fragmented message
	in = append(in, frame(0x9, true, []byte("pp"))...)             // a ping between fragments
	in = append(in, frame(0x0, true, []byte("\nok\r\nPING\r\n"))...)
	_, err = r.conn.Write(in)
	require.NoError(t, err)

	for _, want := range []string{"raw.a:a", "raw.b:b", "raw.c:hello", "raw.d:ok"} {
		m, err := sub.NextMsg(3 * time.Second)
		require.NoError(t, err)
		require.Equal(t, want, m.Subject+":"+string(m.Data))
	}
	sawPong, sawPONG := false, false
	for !sawPong || !sawPONG {
		op, p := readFrame(t, r.br)
		switch {
		case op == 0xA:
			require.Equal(t, "pp", string(p))
			sawPong = true
		case op == 0x2 && strings.Contains(string(p), "PONG"):
			sawPONG = true
		}
	}
}

// TestWebSocketAuthAfterUpgrade: credentials only in CONNECT are checked
// there, as nats-server does: -ERR 'Authorization Violation' and close
// 1008. allowed_connection_types splits users between TCP and WebSocket.
func TestWebSocketAuthAfterUpgrade(t *testing.T) {
	a, err := auth.New(auth.Options{Users: []auth.User{
		{Name: "web", Password: "pw", ConnTypes: auth.ConnTypes(0).Add(auth.ConnWebSocket)},
		{Name: "tcp", Password: "pw", ConnTypes: auth.ConnTypes(0).Add(auth.ConnStandard)},
	}})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a}, websocket.Options{})

	connect(t, e.wsURL(), nats.UserInfo("web", "pw"))
	connect(t, e.natsURL(), nats.UserInfo("tcp", "pw"))
	_, err = nats.Connect(e.natsURL(), nats.UserInfo("web", "pw"), nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation", "a WEBSOCKET-only user over TCP")
	_, err = nats.Connect(e.wsURL(), nats.UserInfo("tcp", "pw"), nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation", "a STANDARD-only user over WebSocket")

	r := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, r.status)
	_, _ = r.conn.Write(frame(0x2, true, []byte(`CONNECT {"user":"web","pass":"wrong"}`+"\r\nPING\r\n")))
	code, reason, data := readUntilClose(t, r.br)
	require.Contains(t, data, "-ERR 'Authorization Violation'")
	require.Equal(t, websocket.ClosePolicyViolation, code)
	require.Equal(t, "Authorization Violation", reason)
}

// TestCompressionNegotiated: permessage-deflate offered by the client is
// accepted without context takeover, and server frames are compressed
// (RSV1) and inflate to the protocol bytes; not offered, not used.
func TestCompressionNegotiated(t *testing.T) {
	e := start(t, broker.Options{}, websocket.Options{Compression: true})
	r := send(t, e.ws.Addr().String(), upgradeRequest("/", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"))
	require.Equal(t, 101, r.status)
	ext := r.header.Get("Sec-WebSocket-Extensions")
	require.Contains(t, ext, "permessage-deflate")
	require.Contains(t, ext, "server_no_context_takeover")
	require.Contains(t, ext, "client_no_context_takeover")
	h, err := r.br.Peek(1)
	require.NoError(t, err)
	require.Equal(t, byte(0x40), h[0]&0x40, "INFO is sent compressed")
	_, p := readFrame(t, r.br)
	fr := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	info, _ := io.ReadAll(fr)
	require.True(t, strings.HasPrefix(string(info), "INFO {"), "%q", info)

	plain := send(t, e.ws.Addr().String(), upgradeRequest("/"))
	require.Equal(t, 101, plain.status)
	require.Empty(t, plain.header.Get("Sec-WebSocket-Extensions"))
	h, err = plain.br.Peek(1)
	require.NoError(t, err)
	require.Zero(t, h[0]&0x40)
}
