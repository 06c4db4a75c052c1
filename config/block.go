package config

import (
	"fmt"
	"time"

	"github.com/busbar/busbar/transport"
)

// Field reads one key of a block: Block's readers return one for a
// destination, and a decoder may write its own (e.Value holds the value
// with its position).
type Field func(e *Entry)

// field is the name this package's own tables use.
type field = Field

// Block is a registered transport's block as its Decode sees it: the
// parsed entry with positions, readers that report a wrong value at its
// position, and the configuration read so far. Problems are collected,
// not returned, so one parse reports all of them.
//
//	o := &Options{Path: "/tmp/busbar.sock"}
//	b.Fields(map[string]config.Field{
//		"path": b.String(&o.Path),
//		"mode": b.Int(&o.Mode, 0, 0o777),
//		"tls":  b.TLS(&o.TLS),
//	})
type Block struct {
	name  string
	entry *Entry
	d     *dec
	c     *Config
}

// Name is the registered name of the block (not the alias the file may
// have used).
func (b *Block) Name() string { return b.name }

// Entry is the block's key and value as parsed, for a value the readers
// do not cover (`unix: "/tmp/busbar.sock"` as a shorthand, say).
func (b *Block) Entry() *Entry { return b.entry }

// Pos is where the block's value starts.
func (b *Block) Pos() Pos { return b.entry.Value.Pos }

// Config is the configuration read so far: keys above the block in the
// file are set (the NATS listener's host, for a default), keys below it
// are not yet.
func (b *Block) Config() *Config { return b.c }

// Fields reads the block's keys: each key (case-insensitive) is handed to
// its Field; any other key is an error at its position ("unknown key
// \"x\" in unix"). A value that is not a {} block is an error too. It
// reports whether the value was a block.
func (b *Block) Fields(fields map[string]Field) bool {
	m, ok := b.d.mapOf(b.entry)
	if !ok {
		return false
	}
	b.d.walk(m, block{name: b.name, fields: fields})
	return true
}

// Map reads a nested {} block (the value of e) with its own table; name
// labels its keys in messages ("unix.limits").
func (b *Block) Map(e *Entry, name string, fields map[string]Field) {
	if m, ok := b.d.mapOf(e); ok {
		b.d.walk(m, block{name: name, fields: fields})
	}
}

// Errorf reports a problem at a position (an Entry's KeyPos or
// Value.Pos): "FILE:LINE:COL: message".
func (b *Block) Errorf(at Pos, format string, args ...any) {
	b.d.errf(at, format, args...)
}

// Warnf records a warning at a position (Config.Warnings).
func (b *Block) Warnf(at Pos, format string, args ...any) {
	b.d.warnf(at, format, args...)
}

// String reads a string (a bare word of any kind is its text).
func (b *Block) String(dst *string) Field { return b.d.setStr(dst) }

// Strings reads a list of strings, or one string.
func (b *Block) Strings(dst *[]string) Field { return b.d.setStrings(dst) }

// Bool reads a boolean in every spelling (true, yes, on, enabled, ...).
func (b *Block) Bool(dst *bool) Field { return b.d.setBool(dst) }

// Int reads an integer (size suffixes applied: 64KB) within [lo, hi].
func (b *Block) Int(dst *int, lo, hi int64) Field { return b.d.setInt(dst, lo, hi) }

// Int64 is Int for an int64.
func (b *Block) Int64(dst *int64, lo, hi int64) Field { return b.d.setInt64(dst, lo, hi) }

// Duration reads a duration ("2s", "1m") or a number of seconds.
func (b *Block) Duration(dst *time.Duration) Field { return b.d.setDur(dst) }

// Port reads a port number: 0 or -1 is a free port.
func (b *Block) Port(dst *int) Field { return b.d.setPort(dst) }

// HostPort reads `listen`: "host:port", ":port" or a port number.
func (b *Block) HostPort(host *string, port *int) Field {
	return func(e *Entry) { b.d.hostPort(e, host, port) }
}

// TLS reads a tls {} block with the keys of the top-level one (cert_file
// and key_file required); certificates are loaded when the transport is
// built (TLSOptions.Config, or transport.Listener.Setup).
func (b *Block) TLS(dst **transport.TLSOptions) Field {
	return func(e *Entry) { *dst = b.d.tls(e, fmt.Sprintf("%s.tls", b.name)) }
}
