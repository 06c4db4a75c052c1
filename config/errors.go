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

	fatal bool // a variable could not be resolved: not a syntax matter
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

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

// ErrTooLarge: the configuration (files, nesting, include count or
// variable expansion) is over one of the parser's bounds.
var ErrTooLarge = errors.New("config: too large")
