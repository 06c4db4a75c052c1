package store

import "errors"

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("store: closed")

// ErrOwned is Claim's answer when the session belongs to another identity.
var ErrOwned = errors.New("store: the session belongs to another identity")

// ErrUnavailable is what a Shared store answers while the place it keeps
// state in cannot be reached (transports refuse new sessions then).
var ErrUnavailable = errors.New("store: shared state unavailable")
