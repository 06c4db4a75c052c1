package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"
)

// Listener binds an address (optionally with TLS) and runs an accept loop
// that backs off on temporary errors, from 5 ms doubling to 1 s, like
// net/http and hashicorp/raft. Transports embed it.
type Listener struct {
	Proto   string // error prefix: "nats", "mqtt", "websocket"
	Address string // host:port to bind; port 0 picks a free one
	// Log receives the accept loop's warnings (an error it backs off
	// from, such as too many open files); nil: none. Set it before Accept.
	Log *slog.Logger

	mu      sync.Mutex
	ln      net.Listener
	closed  bool
	stopped error // why the accept loop ended early (Healthy)
}

// Setup prepares a listener for proto on host:port (host default
// 127.0.0.1, port 0 or -1: a free one) and loads the TLS configuration,
// so a bad certificate is reported before anything listens. It returns
// nil TLS config when t is nil.
func (l *Listener) Setup(proto, host string, port int, t *TLSOptions) (*tls.Config, error) {
	if host == "" {
		host = "127.0.0.1"
	}
	l.Proto = proto
	l.Address = net.JoinHostPort(host, strconv.Itoa(max(port, 0)))
	if t == nil {
		return nil, nil
	}
	return t.Config()
}

// Listen binds the address. Errors read "nats: listen 127.0.0.1:4222:
// address already in use".
func (l *Listener) Listen() error {
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
			var se interface{ Unwrap() error }
			if errors.As(err, &se) && se.Unwrap() != nil {
				err = se.Unwrap()
			}
		}
		return fmt.Errorf("%s: listen %s: %w", l.Proto, l.Address, err)
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	return nil
}

// UseListener makes the transport accept on ln instead of binding
// Address: a socket the host application made (systemd activation, a
// test that closes it underneath). Call it instead of Listen.
func (l *Listener) UseListener(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.Address = ln.Addr().String()
	l.mu.Unlock()
}

// Healthy reports whether the listener accepts connections: nil while
// bound and its accept loop has not stopped on an error, nor Close been
// called (broker.HealthChecker). Any goroutine.
func (l *Listener) Healthy() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.ln == nil:
		return fmt.Errorf("%s: %w", l.Proto, ErrNotListening)
	case l.closed:
		return fmt.Errorf("%s: %s: %w", l.Proto, l.ln.Addr(), ErrListenerClosed)
	case l.stopped != nil:
		return fmt.Errorf("%s: %s: %w", l.Proto, l.ln.Addr(), l.stopped)
	}
	return nil
}

// Addr is the bound address, or nil before Listen.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Close stops the accept loop.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.ln == nil {
		return nil
	}
	// Already closed underneath is not an error here: Healthy reports it.
	if err := l.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Accept runs the accept loop, calling serve on a new goroutine (started
// through spawn so the broker tracks it) for each connection. TLS is the
// protocol's business (NATS sends INFO in the clear first). It returns nil
// once Close was called.
func (l *Listener) Accept(ctx context.Context, spawn func(func()), serve func(net.Conn)) error {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	if ln == nil {
		return fmt.Errorf("%s: serve before listen: %w", l.Proto, ErrNotListening)
	}
	delay := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.isClosed() || ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = backoff(delay)
				if l.Log != nil { // rate-limited by the broker's logger
					l.Log.Warn(l.Proto+": accept failed, retrying", "address", l.Address, "retry_in", delay, "err", err)
				}
				time.Sleep(delay)
				continue
			}
			err = fmt.Errorf("%w: %w", ErrAcceptStopped, err)
			l.mu.Lock()
			l.stopped = err
			l.mu.Unlock()
			return fmt.Errorf("%s: %w", l.Proto, err)
		}
		delay = 0
		spawn(func() { serve(c) })
	}
}

func (l *Listener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func backoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	d *= 2
	if d > time.Second {
		d = time.Second
	}
	return d
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
