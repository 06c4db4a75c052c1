package config

import (
	"errors"
	"strings"
)

// Error is one problem in a configuration, at a position. Error() is
// "FILE:LINE:COL: message".
type Error struct {
	Pos Pos
	Msg string

	fatal bool  // a variable could not be resolved: not a syntax matter
	err   error // what building from the key failed with (Unwrap); nil for a parse error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap is the error building from the key failed with (a certificate
// that does not load: transport.ErrTLSConfig), or nil.
func (e *Error) Unwrap() error { return e.err }

// Errors is every problem found in one configuration, in file order. A
// syntax error stops parsing, so it comes alone.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look into each error.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// Warning is a key busbar accepts but does not act on (nats-server knows
// it, busbar does not implement it), or a value it adjusted.
type Warning struct {
	Pos Pos
	Msg string
}

func (w Warning) String() string { return w.Pos.String() + ": warning: " + w.Msg }

// AsErrors returns the positioned errors in err (a config.Errors, or a
// single *Error), or nil when err carries none.
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return nil
}

// Sentinels, for errors.Is. Problems in a file are positioned Errors
// instead.
var (
	// ErrTooLarge: the configuration (files, nesting, include count or
	// variable expansion) is over one of the parser's bounds.
	ErrTooLarge = errors.New("config: too large")
	// ErrNoTransport: a registered transport's New returned neither a
	// transport nor an error (a bug in that transport's registration).
	ErrNoTransport = errors.New("config: New returned no transport")
)
