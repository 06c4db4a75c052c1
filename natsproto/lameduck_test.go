package natsproto_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
)

func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	require.NoError(t, err)
	return l
}

func infoJSON(t *testing.T, line string) map[string]any {
	t.Helper()
	require.True(t, strings.HasPrefix(line, "INFO "), "not an INFO: %q", line)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(line[5:])), &m))
	return m
}

// TestLameDuckInfo: the first INFO carries no "ldm"; on lame duck a
// client that sent CONNECT with protocol 1 gets a second INFO with
// "ldm":true and the usual fields, then is closed.
func TestLameDuckInfo(t *testing.T) {
	s := startServer(t, broker.Options{LameDuckDuration: time.Second, LameDuckGracePeriod: 50 * time.Millisecond})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	first := readLine(t, r)
	require.NotContains(t, first, "ldm")
	_, err = c.Write([]byte("CONNECT {\"protocol\":1,\"verbose\":false}\r\nPING\r\n"))
	require.NoError(t, err)
	require.Equal(t, "PONG\r\n", readLine(t, r))

	done := make(chan error, 1)
	go func() { done <- s.b.LameDuck(context.Background()) }()
	info := infoJSON(t, readLine(t, r))
	require.Equal(t, true, info["ldm"])
	require.Equal(t, s.b.ID(), info["server_id"])
	require.NotZero(t, info["client_id"])
	require.Equal(t, float64(broker.DefaultMaxPayload), info["max_payload"])
	rest, err := io.ReadAll(r)
	require.NoError(t, err, "the connection is closed cleanly")
	require.Empty(t, string(rest))
	require.NoError(t, <-done)
}

// TestLameDuckNoInfoBeforeProtocol1: a client that did not ask for INFO
// updates (protocol 0) is closed without one.
func TestLameDuckNoInfoBeforeProtocol1(t *testing.T) {
	s := startServer(t, broker.Options{LameDuckDuration: time.Second, LameDuckGracePeriod: 50 * time.Millisecond})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	readLine(t, r)
	_, err = c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
	require.NoError(t, err)
	require.Equal(t, "PONG\r\n", readLine(t, r))
	done := make(chan error, 1)
	go func() { done <- s.b.LameDuck(context.Background()) }()
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Empty(t, string(rest))
	require.NoError(t, <-done)
}

// TestLameDuckNatsGo: nats.go's LameDuckModeHandler runs, then the
// connection is closed well within the lame duck duration.
func TestLameDuckNatsGo(t *testing.T) {
	const duration = 2 * time.Second
	s := startServer(t, broker.Options{LameDuckDuration: duration, LameDuckGracePeriod: 100 * time.Millisecond})
	ldm := make(chan struct{}, 1)
	closed := make(chan struct{})
	nc, err := nats.Connect(s.url(), nats.NoReconnect(),
		nats.LameDuckModeHandler(func(*nats.Conn) { ldm <- struct{}{} }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	require.NoError(t, err)
	defer nc.Close()

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- s.b.LameDuck(context.Background()) }()
	select {
	case <-ldm:
	case <-time.After(5 * time.Second):
		t.Fatal("LameDuckModeHandler was not called")
	}
	select {
	case <-closed:
	case <-time.After(duration + 5*time.Second):
		t.Fatal("the connection outlived the lame duck duration")
	}
	require.NoError(t, <-done)
	require.Less(t, time.Since(start), duration+5*time.Second)
	require.True(t, s.b.Closed())
}
