package config

import (
	"fmt"
	"strings"
)

// Pos is where a key or value starts: file, line and column, from 1.
// Columns count bytes, as the Go toolchain does.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	if p.Line == 0 { // the file as a whole (it cannot be read): no made-up position
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Kind is the type of a parsed value.
type Kind uint8

// Value kinds.
const (
	KindString Kind = iota + 1
	KindInt
	KindFloat
	KindBool
	KindMap
	KindList
)

var kindNames = [...]string{KindString: "string", KindInt: "integer", KindFloat: "number", KindBool: "boolean", KindMap: "map", KindList: "list"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "nothing"
}

// Value is one parsed value with its position. A value reached through a
// variable is shared by every reference to it: treat the tree as
// read-only.
type Value struct {
	Kind  Kind
	Pos   Pos
	Raw   string // source text of a bare word or number; the text of a string
	Str   string // KindString
	Int   int64  // KindInt (size suffixes applied)
	Float float64
	Bool  bool
	Map   *Map
	List  []*Value

	Quoted bool // a quoted (or block) string, never a number, boolean or variable
	nodes  int  // values in this subtree, for the expansion budget
}

// Map is a parsed `{}` block (or the whole file): entries in file order,
// a later entry replacing an earlier one with the same key.
type Map struct {
	Entries []*Entry
	index   map[string]int
}

// Entry is one key of a Map.
type Entry struct {
	Key    string
	KeyPos Pos
	Value  *Value
	// Used: the entry was referenced as a variable ($key), so it may be a
	// definition only and an unknown key is not an error (as nats-server).
	Used bool
}

func newMap() *Map { return &Map{index: make(map[string]int)} }

// Get returns the entry for key (exact match), or nil.
func (m *Map) Get(key string) *Entry {
	if m == nil {
		return nil
	}
	if i, ok := m.index[key]; ok {
		return m.Entries[i]
	}
	return nil
}

// Lookup returns the entry for key, ignoring case (config keys are
// case-insensitive, as in nats-server).
func (m *Map) Lookup(key string) *Entry {
	if e := m.Get(key); e != nil {
		return e
	}
	if m == nil {
		return nil
	}
	for _, e := range m.Entries {
		if strings.EqualFold(e.Key, key) {
			return e
		}
	}
	return nil
}

func (m *Map) set(e *Entry) {
	if i, ok := m.index[e.Key]; ok {
		m.Entries[i] = e
		return
	}
	m.index[e.Key] = len(m.Entries)
	m.Entries = append(m.Entries, e)
}

// Interface converts v to plain Go values (map[string]any, []any, string,
// int64, float64, bool), for printing and tests.
func (v *Value) Interface() any {
	switch v.Kind {
	case KindString:
		return v.Str
	case KindInt:
		return v.Int
	case KindFloat:
		return v.Float
	case KindBool:
		return v.Bool
	case KindMap:
		out := make(map[string]any, len(v.Map.Entries))
		for _, e := range v.Map.Entries {
			out[e.Key] = e.Value.Interface()
		}
		return out
	case KindList:
		out := make([]any, len(v.List))
		for i, x := range v.List {
			out[i] = x.Interface()
		}
		return out
	}
	return nil
}
