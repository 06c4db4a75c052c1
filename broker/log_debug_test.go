package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLimitHandlerOffAtDebug: with the handler enabled at Debug (-D), a
// repeated authentication failure from one host is written every time
// (issue 18: a developer retrying from 127.0.0.1 saw one per 10 s);
// other repeated lines stay limited.
func TestLimitHandlerOffAtDebug(t *testing.T) {
	level := new(slog.LevelVar)
	var buf bytes.Buffer
	h := newLimitHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level}), time.Minute)
	log := slog.New(h)
	fail := func() {
		log.Log(logUnlimitedAtDebug, slog.LevelWarn, "authentication failed", "remote", "127.0.0.1:5000")
		log.Warn("protocol error", "remote", "127.0.0.1:5000")
	}

	level.Set(slog.LevelInfo)
	for range 3 {
		fail()
	}
	if n := strings.Count(buf.String(), "authentication failed"); n != 1 {
		t.Fatalf("at Info: %d lines, want 1 (limited):\n%s", n, buf.String())
	}
	buf.Reset()
	level.Set(slog.LevelDebug) // a reload with debug: true, or -D from the start
	for range 3 {
		fail()
	}
	if n := strings.Count(buf.String(), "authentication failed"); n != 3 {
		t.Fatalf("at Debug: %d lines, want 3 (every one):\n%s", n, buf.String())
	}
	if n := strings.Count(buf.String(), "protocol error"); n != 0 {
		t.Fatalf("at Debug: %d protocol error lines, want 0 (still limited):\n%s", n, buf.String())
	}
}
