package config

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// dec turns the parsed tree into typed options, collecting every error
// and warning with its position (it does not stop at the first).
type dec struct {
	errs     Errors
	warns    []Warning
	notices  []Warning
	pos      map[string]Pos // "websocket.port" → where the key is
	dir      string         // the main file's directory
	readFile func(string) ([]byte, error)
	noPass   []userPos // users with a name and nothing else to log in with
}

func (d *dec) errf(at Pos, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: at, Msg: fmt.Sprintf(format, args...)})
}

func (d *dec) warnf(at Pos, format string, args ...any) {
	d.warns = append(d.warns, Warning{Pos: at, Msg: fmt.Sprintf(format, args...)})
}

// block is a table of the keys one `{}` block takes. Aliases map to the
// same handler; ignored holds keys nats-server knows that busbar does not
// implement (a warning each).
type block struct {
	name    string // for messages: "authorization", "websocket.tls", ...
	fields  map[string]field
	ignored []string
}

// walk calls each entry's handler; an unknown key is an error naming it,
// unless it only defines a variable used elsewhere (as nats-server).
func (d *dec) walk(m *Map, b block) {
	for _, e := range m.Entries {
		k := strings.ToLower(e.Key)
		if f, ok := b.fields[k]; ok {
			path := k
			if b.name != "" {
				path = b.name + "." + k
			}
			if _, seen := d.pos[path]; !seen {
				d.pos[path] = e.KeyPos
			}
			f(e)
			continue
		}
		if contains(b.ignored, k) {
			d.warnf(e.KeyPos, "%s: busbar does not implement this nats-server option; ignored", b.qualify(e.Key))
			continue
		}
		if e.Used {
			continue
		}
		d.errf(e.KeyPos, "unknown key %s", b.qualify(e.Key))
	}
}

func (b block) qualify(key string) string {
	if b.name == "" {
		return strconv.Quote(key)
	}
	return strconv.Quote(key) + " in " + b.name
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (d *dec) wrong(e *Entry, want string) {
	d.errf(e.Value.Pos, "%s: expected %s, got %s", e.Key, want, describe(e.Value))
}

func describe(v *Value) string {
	switch v.Kind {
	case KindString:
		return strconv.Quote(v.Str)
	case KindMap, KindList:
		return "a " + v.Kind.String()
	}
	return v.Kind.String() + " " + v.Raw
}

// str accepts a string, or a bare word of any kind (`user: 1234`).
func (d *dec) str(e *Entry) (string, bool) {
	v := e.Value
	switch {
	case v.Kind == KindString:
		return v.Str, true
	case !v.Quoted && v.Raw != "" && v.Kind != KindMap && v.Kind != KindList:
		return v.Raw, true
	}
	d.wrong(e, "a string")
	return "", false
}

func (d *dec) setStr(dst *string) field {
	return func(e *Entry) {
		if s, ok := d.str(e); ok {
			*dst = s
		}
	}
}

// boolean accepts every spelling, bare or quoted.
func (d *dec) boolean(e *Entry) (bool, bool) {
	v := e.Value
	if v.Kind == KindBool {
		return v.Bool, true
	}
	if v.Kind == KindString {
		if b, ok := parseBool(v.Str); ok {
			return b, true
		}
	}
	d.wrong(e, "true or false")
	return false, false
}

func (d *dec) setBool(dst *bool) field {
	return func(e *Entry) {
		if b, ok := d.boolean(e); ok {
			*dst = b
		}
	}
}

// integer accepts an integer (size suffixes applied) within [lo, hi].
func (d *dec) integer(e *Entry, lo, hi int64) (int64, bool) {
	v := e.Value
	n, ok := v.Int, v.Kind == KindInt
	if v.Kind == KindString { // "1MB" quoted
		if x, err := classify(v.Str, v.Pos); err == nil && x.Kind == KindInt {
			n, ok = x.Int, true
		}
	}
	if !ok {
		d.wrong(e, "an integer")
		return 0, false
	}
	if n < lo || n > hi {
		if hi == math.MaxInt64 {
			d.errf(v.Pos, "%s: %d is out of range (at least %d)", e.Key, n, lo)
		} else {
			d.errf(v.Pos, "%s: %d is out of range (%d..%d)", e.Key, n, lo, hi)
		}
		return 0, false
	}
	return n, true
}

func (d *dec) setInt(dst *int, lo, hi int64) field {
	return func(e *Entry) {
		if n, ok := d.integer(e, lo, hi); ok {
			*dst = int(n)
		}
	}
}

func (d *dec) setInt64(dst *int64, lo, hi int64) field {
	return func(e *Entry) {
		if n, ok := d.integer(e, lo, hi); ok {
			*dst = n
		}
	}
}

// duration accepts "2s"/"1m"/"1h30m" (quoted or bare) or a number of
// seconds (integer or fractional, as nats-server takes seconds).
func (d *dec) duration(e *Entry) (time.Duration, bool) {
	v := e.Value
	var dur time.Duration
	switch v.Kind {
	case KindInt:
		if v.Raw != "" && strings.Trim(v.Raw, "-0123456789") != "" {
			// `1m` bare: a size to the lexer, a minute here.
			x, err := time.ParseDuration(v.Raw)
			if err != nil {
				d.errf(v.Pos, "%s: %q is not a duration (examples: \"2s\", \"1m\", \"1h\")", e.Key, v.Raw)
				return 0, false
			}
			dur = x
		} else {
			if v.Int > math.MaxInt64/int64(time.Second) {
				d.errf(v.Pos, "%s: %d seconds is out of range", e.Key, v.Int)
				return 0, false
			}
			dur = time.Duration(v.Int) * time.Second
		}
	case KindFloat:
		if v.Float > float64(math.MaxInt64)/float64(time.Second) {
			d.errf(v.Pos, "%s: %s seconds is out of range", e.Key, v.Raw)
			return 0, false
		}
		dur = time.Duration(v.Float * float64(time.Second))
	case KindString:
		x, err := time.ParseDuration(v.Str)
		if err != nil {
			d.errf(v.Pos, "%s: %q is not a duration (examples: \"2s\", \"1m\", \"1h\")", e.Key, v.Str)
			return 0, false
		}
		dur = x
	default:
		d.wrong(e, "a duration")
		return 0, false
	}
	if dur < 0 {
		d.errf(v.Pos, "%s: duration must not be negative", e.Key)
		return 0, false
	}
	return dur, true
}

func (d *dec) setDur(dst *time.Duration) field {
	return func(e *Entry) {
		if x, ok := d.duration(e); ok {
			*dst = x
		}
	}
}

// strings accepts a list of strings, or one string.
func (d *dec) strings(e *Entry) ([]string, bool) {
	v := e.Value
	if v.Kind != KindList {
		s, ok := d.str(e)
		if !ok {
			return nil, false
		}
		return []string{s}, true
	}
	out := make([]string, 0, len(v.List))
	ok := true
	for _, x := range v.List {
		s, good := d.str(&Entry{Key: e.Key, KeyPos: e.KeyPos, Value: x})
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

func (d *dec) setStrings(dst *[]string) field {
	return func(e *Entry) {
		if s, ok := d.strings(e); ok {
			*dst = s
		}
	}
}

// mapOf returns the entry's map, or reports the wrong type.
func (d *dec) mapOf(e *Entry) (*Map, bool) {
	if e.Value.Kind != KindMap {
		d.wrong(e, "a {} block")
		return nil, false
	}
	return e.Value.Map, true
}

// hostPort reads `listen`: "host:port", ":port" or a port number.
func (d *dec) hostPort(e *Entry, host *string, port *int) {
	v := e.Value
	if v.Kind == KindInt {
		if n, ok := d.integer(e, -1, 65535); ok {
			*port = int(n)
		}
		return
	}
	s, ok := d.str(e)
	if !ok {
		return
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		d.errf(v.Pos, "%s: %q is not host:port", e.Key, s)
		return
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < -1 || n > 65535 {
		d.errf(v.Pos, "%s: port %q is not a number in 0..65535", e.Key, p)
		return
	}
	if h != "" {
		*host = h
	}
	*port = n
}

func (d *dec) setPort(dst *int) field { return d.setInt(dst, -1, 65535) }
