package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLimitHandlerCountsWhatItDrops drives the limiter with explicit
// record times: the first line of a source goes out, repeats inside the
// window are dropped, and the next line after it says how many were.
func TestLimitHandlerCountsWhatItDrops(t *testing.T) {
	var buf bytes.Buffer
	h := newLimitHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), time.Minute)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	emit := func(h slog.Handler, at time.Duration, level slog.Level, msg string, attrs ...slog.Attr) {
		r := slog.NewRecord(t0.Add(at), level, msg, 0)
		r.AddAttrs(attrs...)
		require.NoError(t, h.Handle(context.Background(), r))
	}
	a1 := slog.String("remote", "10.0.0.1:5000")
	a2 := slog.String("remote", "10.0.0.1:5001") // same host, other port
	b := slog.String("remote", "10.0.0.2:5000")
	emit(h, 0, slog.LevelWarn, "auth failed", a1)
	emit(h, time.Second, slog.LevelWarn, "auth failed", a2)
	emit(h, 2*time.Second, slog.LevelWarn, "auth failed", a1)
	emit(h, 3*time.Second, slog.LevelWarn, "auth failed", b)    // another host
	emit(h, 4*time.Second, slog.LevelWarn, "other message", a1) // another message
	emit(h, 5*time.Second, slog.LevelDebug, "auth failed", a1)  // debug: never limited
	emit(h, 61*time.Second, slog.LevelWarn, "auth failed", a1)  // window over: out, with the count
	emit(h, 62*time.Second, slog.LevelError, "auth failed", a1) // inside the new window: dropped
	conn := h.WithAttrs([]slog.Attr{slog.Int("cid", 7), slog.String("remote", "10.0.0.3:1")})
	emit(conn, 0, slog.LevelWarn, "write failed")
	emit(conn, time.Second, slog.LevelWarn, "write failed") // the connection's remote is the source

	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		s := m["msg"].(string) + " " + m["remote"].(string)
		if n, ok := m["suppressed"]; ok {
			s += " suppressed=" + jsonNum(n)
		}
		got = append(got, s)
	}
	require.Equal(t, []string{
		"auth failed 10.0.0.1:5000",
		"auth failed 10.0.0.2:5000",
		"other message 10.0.0.1:5000",
		"auth failed 10.0.0.1:5000",
		"auth failed 10.0.0.1:5000 suppressed=2",
		"write failed 10.0.0.3:1",
	}, got)
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestLimiterBounded: a flood of distinct sources does not grow the table
// past its bound.
func TestLimiterBounded(t *testing.T) {
	l := &limiter{every: time.Minute, keys: make(map[string]*limitEntry)}
	now := time.Now()
	for i := 0; i < 3*limitMaxKeys; i++ {
		ok, _ := l.allow(strings.Repeat("k", i%7)+string(rune(i)), now)
		require.True(t, ok)
	}
	require.LessOrEqual(t, len(l.keys), limitMaxKeys)
}
