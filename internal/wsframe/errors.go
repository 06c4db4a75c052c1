package wsframe

import (
	"errors"
	"fmt"
	"io"
	"net"
)

// Sentinels a CloseError unwraps to, one per close code this end closes
// with, and the errors of the write side.
var (
	// ErrProtocol: the peer broke RFC 6455 framing (close 1002). The
	// peer is not a WebSocket endpoint, or not one that speaks the
	// negotiated extensions.
	ErrProtocol = errors.New("wsframe: the peer broke the WebSocket framing rules")
	// ErrInvalidPayload: a text message or close reason that is not
	// UTF-8, or a compressed message that does not inflate (close 1007).
	ErrInvalidPayload = errors.New("wsframe: the peer sent an invalid payload (text not UTF-8, or compressed data that does not inflate)")
	// ErrTooBig: a message over Config.MaxMessage (close 1009); raise
	// the limit if the peer's messages are legitimately that large.
	ErrTooBig = errors.New("wsframe: the peer sent a message larger than the limit")
	// ErrClosed is returned by writes after the close frame was sent. It
	// is a net.ErrClosed to callers.
	ErrClosed = fmt.Errorf("wsframe: write after the close frame: %w", net.ErrClosed)
	// ErrControlTooLong: a control frame's payload is limited to 125
	// bytes (RFC 6455 §5.5).
	ErrControlTooLong = errors.New("wsframe: control frame payload longer than 125 bytes")
	// errBadCompressor: compress/flate did not end a flush with the
	// sync marker RFC 7692 strips (never seen; a safety check).
	errBadCompressor = errors.New("wsframe: compressed message does not end with a sync flush")
)

// CloseError is the end of a connection with a close code: the peer's
// close frame (Remote), or a violation by the peer that this end
// closes with Code (a Codec returns it from Read and leaves sending the
// close frame to its owner: see Codec.WriteClose).
type CloseError struct {
	Code   int
	Reason string
	Remote bool
}

func (e *CloseError) Error() string {
	switch {
	case e.Remote && e.Reason != "":
		return fmt.Sprintf("wsframe: the peer closed the connection (code %d: %s)", e.Code, e.Reason)
	case e.Remote:
		return fmt.Sprintf("wsframe: the peer closed the connection (code %d)", e.Code)
	}
	return fmt.Sprintf("%v: %s (close %d)", e.Unwrap(), e.Reason, e.Code)
}

// Unwrap makes the peer's close frame an io.EOF (a clean end of the
// stream) and a violation its sentinel (ErrProtocol, ErrInvalidPayload,
// ErrTooBig).
func (e *CloseError) Unwrap() error {
	switch {
	case e.Remote:
		return io.EOF
	case e.Code == CloseInvalidPayload:
		return ErrInvalidPayload
	case e.Code == CloseMessageTooBig:
		return ErrTooBig
	}
	return ErrProtocol
}

func protocolError(reason string) error {
	return &CloseError{Code: CloseProtocolError, Reason: reason}
}

func invalidPayload(reason string) error {
	return &CloseError{Code: CloseInvalidPayload, Reason: reason}
}
