package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
)

// TestWebSocketBlockTakesEffect: the seed's websocket {} options run as
// written: no_tls, compression, the block's own authorization (a token
// for WebSocket clients only, nats-server's override), the start-up line.
func TestWebSocketBlockTakesEffect(t *testing.T) {
	natsPort, wsPort := testpeer.FreePort(t), testpeer.FreePort(t)
	path := filepath.Join(t.TempDir(), "ws.conf")
	writeConf(t, path, fmt.Sprintf(`port: %d
websocket
{
     port: %d
     no_tls: true
     compression: true
     handshake_timeout: "2s"
     authorization {
         token: "ws-only-token"
         timeout: 2.0
     }
}
`, natsPort, wsPort))
	_, logs, _ := startWithConfig(t, path)
	require.Regexp(t, regexp.MustCompile(`websocket=127\.0\.0\.1:`+fmt.Sprint(wsPort)), logs.String())

	ws := fmt.Sprintf("ws://127.0.0.1:%d", wsPort)
	nc, err := nats.Connect(ws, nats.Token("ws-only-token"), nats.Compression(true), nats.MaxReconnects(0))
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.SubscribeSync("greet")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	// NATS over TCP is not covered by the WebSocket block's token.
	tcp, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort), nats.MaxReconnects(0))
	require.NoError(t, err)
	defer tcp.Close()
	require.NoError(t, tcp.Publish("greet", []byte("from tcp")))
	m, err := sub.NextMsg(3 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "from tcp", string(m.Data))

	_, err = nats.Connect(ws, nats.MaxReconnects(0))
	require.ErrorContains(t, err, "Authorization Violation", "a WebSocket client without the token")
}
