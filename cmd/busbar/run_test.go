package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
)

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	require.Equal(t, 0, run([]string{"-v"}, &out, &errb, nil))
	require.Contains(t, out.String(), "busbar v")
	out.Reset()
	require.Equal(t, 0, run([]string{"-h"}, &out, &errb, nil))
	require.Contains(t, errb.String(), "-DV")
	errb.Reset()
	require.Equal(t, 2, run([]string{"--bogus"}, &out, &errb, nil))
	require.Contains(t, errb.String(), "bogus")
}

// TestRunServesAndStopsOnSignal starts the command with flags, connects
// nats.go with the credentials the flags set, then stops it as SIGTERM
// would.
func TestRunServesAndStopsOnSignal(t *testing.T) {
	port := testpeer.FreePort(t)
	stop := make(chan os.Signal, 1)
	var out, logs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "--user", "alice", "--pass", "pw", "-D", "--mqtt_port", "-1", "--ws_port", "-1", "-m", "0"}, &out, &logs, stop)
	}()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	var nc *nats.Conn
	require.Eventually(t, func() bool {
		var err error
		nc, err = nats.Connect(url, nats.UserInfo("alice", "pw"))
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	defer nc.Close()
	_, err := nats.Connect(url, nats.UserInfo("alice", "wrong"))
	require.ErrorIs(t, err, nats.ErrAuthorization)
	sub, err := nc.SubscribeSync("x")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("x", []byte("y")))
	_, err = sub.NextMsg(5 * time.Second)
	require.NoError(t, err)

	stop <- syscall.SIGTERM
	select {
	case code := <-done:
		require.Equal(t, 0, code)
	case <-time.After(10 * time.Second):
		t.Fatal("busbar did not stop within 10s of SIGTERM")
	}
	l := logs.String()
	require.Contains(t, l, "busbar ready")
	require.Contains(t, l, "shutting down")
	require.NotContains(t, l, "pw\"", "a password reached the log")
}

func TestAddressInUse(t *testing.T) {
	port := testpeer.FreePort(t)
	stop := make(chan os.Signal)
	first := make(chan int, 1)
	var l1, l2 syncBuffer
	go func() {
		first <- run([]string{"-p", strconv.Itoa(port), "--mqtt_port", "-1", "--ws_port", "-1", "-m", "0"}, &l1, &l1, stop)
	}()
	require.Eventually(t, func() bool { return strings.Contains(l1.String(), "busbar ready") }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, run([]string{"-p", strconv.Itoa(port), "--mqtt_port", "-1", "--ws_port", "-1", "-m", "0"}, &l2, &l2, nil))
	require.Contains(t, l2.String(), "nats: listen 127.0.0.1:"+strconv.Itoa(port)+": address already in use")
	close(stop)
	<-first
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
