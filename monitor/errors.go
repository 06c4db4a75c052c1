package monitor

import "errors"

// Sentinel errors callers branch on.
var (
	ErrNotListening = errors.New("monitor: serve before listen")
	ErrClosed       = errors.New("monitor: closed")
)
