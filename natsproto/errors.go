package natsproto

import "errors"

// protoError is a protocol outcome with the exact text nats-server sends
// after -ERR, and whether the connection is closed after it.
type protoError struct {
	text  string // sent as -ERR '<text>'
	close bool
}

func (e *protoError) Error() string { return "natsproto: " + e.text }

// Client-visible errors, verbatim from nats-server (clients match on them).
var (
	errUnknownOp          = &protoError{"Unknown Protocol Operation", true}
	errParser             = &protoError{"Parser Error", true}
	errMaxControlLine     = &protoError{"maximum control line exceeded", true}
	errMaxPayload         = &protoError{"Maximum Payload Violation", true}
	errAuthViolation      = &protoError{"Authorization Violation", true}
	errAuthTimeout        = &protoError{"Authentication Timeout", true}
	errAuthExpired        = &protoError{"User Authentication Expired", true}
	errStale              = &protoError{"Stale Connection", true}
	errSlowConsumer       = &protoError{"Slow Consumer", true}
	errMaxConns           = &protoError{"maximum connections exceeded", true}
	errMaxSubs            = &protoError{"Maximum Subscriptions Exceeded", false}
	errInvalidSubject     = &protoError{"Invalid Subject", false}
	errInvalidPubSubject  = &protoError{"Invalid Publish Subject", false}
	errHeadersUnsupported = &protoError{"message headers not supported", true}
	errNoRespNeedsHeaders = &protoError{"no responders requires headers support", true}
	errBadProtocol        = &protoError{"Invalid Client Protocol", true}
	errTLSRequired        = &protoError{"Secure Connection - TLS Required", true}
	errBadConnect         = &protoError{"Parser Error", true}
)

// ErrClosed is returned by ServeConn when the connection ended normally.
var ErrClosed = errors.New("natsproto: connection closed")

// errHandoff tells serve the read loop should continue on a new goroutine
// (never returned to a caller).
var errHandoff = errors.New("natsproto: hand off the read loop")
