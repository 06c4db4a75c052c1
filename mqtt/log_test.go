package mqtt_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
)

type lockedBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuf) linesWith(t testing.TB, msg string) []map[string]any {
	l.mu.Lock()
	text := l.buf.String()
	l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestLogProtocolViolationsRateLimited: five connections from one host
// that publish to a wildcard topic [MQTT-3.3.2-2] are all closed, and
// the broker writes one warning naming the transport, the client's
// address and its session, not five.
func TestLogProtocolViolationsRateLimited(t *testing.T) {
	var lb lockedBuf
	log := slog.New(slog.NewJSONHandler(&lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := start(t, broker.Options{Logger: log}, mqtt.Options{})
	for i := 0; i < 5; i++ {
		r := dialRaw(t, e)
		r.send(connect311...)
		r.connack()
		r.send(0x30, 5, 0, 3, 'a', '/', '+')
		r.closed()
	}
	const msg = "mqtt: closing a connection that broke the protocol"
	require.Eventually(t, func() bool { return len(lb.linesWith(t, msg)) >= 1 }, 5*time.Second, 10*time.Millisecond)
	lines := lb.linesWith(t, msg)
	require.Len(t, lines, 1, "one line per host and message per %v", broker.LogRepeatInterval)
	require.Equal(t, "mqtt", lines[0]["transport"])
	require.Contains(t, lines[0]["remote"], "127.0.0.1:")
	require.NotNil(t, lines[0]["cid"], "the line names the connection")
	require.Contains(t, lines[0]["reason"], "topic name invalid")
}
