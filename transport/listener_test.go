package transport_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/transport"
)

// timeoutErr is what an accept that can be retried returns.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "accept: resource temporarily unavailable" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// flakyListener fails its first n accepts with a retryable error, then
// hands out real connections from a loopback listener.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	fail := f.n > 0
	f.n--
	f.mu.Unlock()
	if fail {
		return nil, timeoutErr{}
	}
	return f.Listener.Accept()
}

// TestAcceptRetriesAndWarns: an accept error that can be retried (EMFILE,
// a timeout) is logged and retried with back-off, and the loop goes on
// serving; it never ends the listener.
func TestAcceptRetriesAndWarns(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var buf bytes.Buffer
	var mu sync.Mutex
	l := &transport.Listener{Proto: "test", Log: slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))}
	l.UseListener(&flakyListener{Listener: inner, n: 3})
	served := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- l.Accept(context.Background(), func(f func()) { go f() }, func(c net.Conn) {
			_ = c.Close()
			served <- struct{}{}
		})
	}()
	c, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	<-served
	require.NoError(t, l.Healthy(), "a retried error does not stop the listener")
	require.NoError(t, l.Close())
	require.NoError(t, <-done)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	require.Equal(t, 3, strings.Count(out, "test: accept failed, retrying"), out)
	require.Contains(t, out, "resource temporarily unavailable")
	require.False(t, errors.Is(l.Healthy(), transport.ErrAcceptStopped))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
