package transport

import "errors"

// Errors Healthy and Accept report (wrapped with the protocol and
// address: "nats: 127.0.0.1:4222: transport: listener closed").
var (
	ErrNotListening   = errors.New("transport: not listening")
	ErrListenerClosed = errors.New("transport: listener closed")
	ErrAcceptStopped  = errors.New("transport: accept loop stopped")
)

// ErrTLSConfig wraps every error building a TLS configuration; the rest of
// the message names the key or file and says why.
var ErrTLSConfig = errors.New("transport: invalid TLS configuration")

// ErrOutboundClosed is returned by writes after Close.
var ErrOutboundClosed = errors.New("transport: outbound closed")

// errHandoff ends a Conn's first read-loop goroutine once the connection
// is set up (never returned to a caller).
var errHandoff = errors.New("transport: hand off the read loop")

// errParked ends a Conn's read-loop goroutine when the connection parks
// (never returned to a caller): the broker's poller resumes the loop on a
// fresh goroutine when input arrives.
var errParked = errors.New("transport: read loop parked")
