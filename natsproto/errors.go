package natsproto

import "errors"

// protoError is a protocol outcome with the exact text nats-server sends
// after -ERR, and whether the connection is closed after it. A silent one
// closes without an -ERR, as nats-server does for malformed arguments; its
// text is only logged.
type protoError struct {
	text   string // sent as -ERR '<text>'
	close  bool
	silent bool
}

func (e *protoError) Error() string { return "natsproto: " + e.text }

// Client-visible errors, verbatim from nats-server 2.15 (clients match on
// them; natsproto/errstrings_test.go lists each condition and its bytes).
// A payload not followed by CRLF is an unknown operation to nats-server's
// parser too. Slow Consumer is never sent (the socket is full): it names
// the WebSocket close.
var (
	errUnknownOp          = &protoError{text: "Unknown Protocol Operation", close: true}
	errMaxControlLine     = &protoError{text: "maximum control line exceeded", close: true}
	errMaxPayload         = &protoError{text: "Maximum Payload Violation", close: true}
	errAuthViolation      = &protoError{text: "Authorization Violation", close: true}
	errAuthTimeout        = &protoError{text: "Authentication Timeout", close: true}
	errAuthExpired        = &protoError{text: "User Authentication Expired", close: true}
	errStale              = &protoError{text: "Stale Connection", close: true}
	errSlowConsumer       = &protoError{text: "Slow Consumer", close: true}
	errMaxConns           = &protoError{text: "maximum connections exceeded", close: true}
	errMaxSubs            = &protoError{text: "maximum subscriptions exceeded"}
	errInvalidSubject     = &protoError{text: "Invalid Subject"}
	errInvalidPubSubject  = &protoError{text: "Invalid Publish Subject"}
	errNoRespNeedsHeaders = &protoError{text: "no responders requires headers support", close: true}
	errBadProtocol        = &protoError{text: "invalid client protocol", close: true}
	errTLSRequired        = &protoError{text: "Secure Connection - TLS Required", close: true}
)

// Closed without an -ERR, as nats-server closes them (a protocol violation).
var (
	errParser             = &protoError{text: "malformed protocol arguments", close: true, silent: true}
	errBadConnect         = &protoError{text: "malformed CONNECT", close: true, silent: true}
	errHeadersUnsupported = &protoError{text: "message headers not supported", close: true, silent: true}
)

// closeViolation is the WebSocket close reason of a silent protoError
// (nats-server's closed state for it).
const closeViolation = "Protocol Violation"

// ErrClosed is returned by ServeConn when the connection ended normally.
var ErrClosed = errors.New("natsproto: connection closed")
