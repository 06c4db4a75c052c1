package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Bounds that keep parsing cheap whatever the input: a hostile or broken
// file is refused with an error, never with unbounded time or memory.
const (
	maxFileSize     = 16 << 20 // bytes per file
	maxDepth        = 64       // nested maps and lists
	maxIncludes     = 256      // files included in one configuration
	maxIncludeDepth = 16
	maxNodes        = 1 << 20 // values, counting each variable reference at its full size
	maxEnvDepth     = 8       // environment variables whose values reference others
)

// tree is a parsed file: the top-level map and what the parse read.
type tree struct {
	root  *Map
	files []string // every file read, the main one first
}

// parseState is shared by a file and everything it includes.
type parseState struct {
	stack    []string // absolute paths being parsed, outermost first
	names    []string // the same files as positions name them
	files    []string
	includes int
	nodes    int
	env      []string // environment variables being expanded
	readFile func(string) ([]byte, error)
	lookup   func(string) (string, bool)
}

// parser reads one file (or one environment value) by recursive descent.
// Only maps are variable scopes: scopes holds the enclosing maps,
// innermost last, and is shared with included files.
type parser struct {
	src    []byte
	off    int
	file   string
	dir    string
	lines  []int // offset of each line start
	depth  int
	scopes []*Map
	st     *parseState
}

func newParser(src []byte, file, dir string, st *parseState) *parser {
	p := &parser{src: src, file: file, dir: dir, st: st, lines: []int{0}}
	for i, c := range src {
		if c == '\n' {
			p.lines = append(p.lines, i+1)
		}
	}
	return p
}

// parseTree parses data (named name, includes relative to dir).
func parseTree(data []byte, name, dir string, st *parseState) (*tree, error) {
	if st.readFile == nil {
		st.readFile = os.ReadFile
	}
	if st.lookup == nil {
		st.lookup = os.LookupEnv
	}
	if abs, err := filepath.Abs(name); err == nil {
		st.stack = append(st.stack, abs)
		st.names = append(st.names, name)
	}
	st.files = append(st.files, name)
	if len(data) > maxFileSize {
		return nil, &Error{Pos: Pos{name, 1, 1}, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)}
	}
	p := newParser(data, name, dir, st)
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) { // a UTF-8 byte order mark
		p.off = 3
	}
	root := newMap()
	p.scopes = []*Map{root}
	p.skipBlank()
	if p.peek() == '{' { // nats-server accepts a file wrapped in braces
		open := p.pos(p.off)
		p.off++
		if err := p.parseBody(root, '}', open); err != nil {
			return nil, err
		}
		p.skipBlank()
		if p.off < len(p.src) {
			return nil, p.errf(p.off, "unexpected %s after the closing '}'", p.quoteChar())
		}
	} else if err := p.parseBody(root, 0, Pos{}); err != nil {
		return nil, err
	}
	return &tree{root: root, files: st.files}, nil
}

func (p *parser) pos(off int) Pos {
	i := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	if i < 0 {
		i = 0
	}
	return Pos{File: p.file, Line: i + 1, Col: off - p.lines[i] + 1}
}

func (p *parser) errf(off int, format string, args ...any) *Error {
	return &Error{Pos: p.pos(off), Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) peek() byte {
	if p.off < len(p.src) {
		return p.src[p.off]
	}
	return 0
}

func (p *parser) peekAt(n int) byte {
	if p.off+n < len(p.src) {
		return p.src[p.off+n]
	}
	return 0
}

func (p *parser) eof() bool { return p.off >= len(p.src) }

// quoteChar describes the byte at the cursor for an error message.
func (p *parser) quoteChar() string {
	if p.eof() {
		return "end of file"
	}
	switch c := p.src[p.off]; c {
	case '\n', '\r':
		return "end of line"
	default:
		if c < ' ' || c >= 0x7f {
			return fmt.Sprintf("byte 0x%02x", c)
		}
		return fmt.Sprintf("'%c'", c)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }
func isNL(c byte) bool    { return c == '\n' || c == '\r' }

// skipSpaces skips blanks on the current line.
func (p *parser) skipSpaces() {
	for p.off < len(p.src) && isSpace(p.src[p.off]) {
		p.off++
	}
}

// atComment reports whether a `#` or `//` comment starts at the cursor.
func (p *parser) atComment() bool {
	c := p.peek()
	return c == '#' || (c == '/' && p.peekAt(1) == '/')
}

func (p *parser) skipComment() {
	for p.off < len(p.src) && p.src[p.off] != '\n' {
		p.off++
	}
}

// skipBlank skips blanks, line ends and comments.
func (p *parser) skipBlank() {
	for p.off < len(p.src) {
		c := p.src[p.off]
		switch {
		case isSpace(c) || isNL(c):
			p.off++
		case p.atComment():
			p.skipComment()
		default:
			return
		}
	}
}

// skipSeparators skips what may stand between entries of a map or items
// of a list: blanks, line ends, comments, ',' and ';'.
func (p *parser) skipSeparators() {
	for {
		p.skipBlank()
		if c := p.peek(); c == ',' || c == ';' {
			p.off++
			continue
		}
		return
	}
}

// parseBody reads map entries into m until closing ('}', or 0 for end of
// file). open is where the '{' was, for an unclosed-map error.
func (p *parser) parseBody(m *Map, closing byte, open Pos) error {
	for {
		p.skipSeparators()
		if p.eof() {
			if closing != 0 {
				return &Error{Pos: open, Msg: "'{' is never closed"}
			}
			return nil
		}
		if c := p.peek(); c == '}' {
			if closing != '}' {
				return p.errf(p.off, "unexpected '}' with no '{' open")
			}
			p.off++
			return nil
		}
		if err := p.parseEntry(m); err != nil {
			return err
		}
	}
}

func isKeyEnd(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ':', '=', '{', '[', '}', ']', ',', ';', '"', '\'':
		return true
	}
	return false
}

// parseEntry reads `key [:|=] value` or `include PATH` into m.
func (p *parser) parseEntry(m *Map) error {
	start := p.off
	key, err := p.parseKey()
	if err != nil {
		return err
	}
	keyPos := p.pos(start)
	quotedKey := p.src[start] == '"' || p.src[start] == '\''
	p.skipSpaces()
	if !quotedKey && strings.EqualFold(key, "include") && p.off > start+len(key) {
		if c := p.peek(); c != ':' && c != '=' && !isNL(c) && c != 0 {
			return p.parseInclude(m, keyPos)
		}
	}
	switch c := p.peek(); {
	case c == ':' || c == '=':
		p.off++
		p.skipSpaces()
		if p.eof() || isNL(p.peek()) || p.atComment() {
			return p.errf(p.off, "key %q has no value", key)
		}
	case isNL(c) || p.atComment():
		// `key` then the value's '{' or '[' on a following line, as the
		// seeds write `websocket` on one line and `{` on the next.
		p.skipBlank()
		if c := p.peek(); c != '{' && c != '[' {
			return &Error{Pos: keyPos, Msg: fmt.Sprintf("key %q has no value", key)}
		}
	case p.eof() || c == '}' || c == ',' || c == ';' || c == ']':
		return &Error{Pos: keyPos, Msg: fmt.Sprintf("key %q has no value", key)}
	}
	v, err := p.parseValue()
	if err != nil {
		return err
	}
	m.set(&Entry{Key: key, KeyPos: keyPos, Value: v})
	return nil
}

func (p *parser) parseKey() (string, error) {
	switch c := p.peek(); c {
	case '"':
		return p.parseDQ()
	case '\'':
		return p.parseSQ()
	case ':', '=', '{', '[', ']':
		return "", p.errf(p.off, "expected a key, found %s", p.quoteChar())
	}
	start := p.off
	for p.off < len(p.src) && !isKeyEnd(p.src[p.off]) {
		p.off++
	}
	if p.off == start {
		return "", p.errf(p.off, "expected a key, found %s", p.quoteChar())
	}
	return string(p.src[start:p.off]), nil
}

// parseValue reads one value at the cursor.
func (p *parser) parseValue() (*Value, error) {
	start := p.off
	if err := p.count(1); err != nil {
		return nil, err
	}
	switch c := p.peek(); c {
	case '{', '[':
		if p.depth >= maxDepth {
			return nil, p.errf(start, "maps and lists nested deeper than %d", maxDepth)
		}
		p.depth++
		defer func() { p.depth-- }()
		if c == '{' {
			return p.parseMap()
		}
		return p.parseList()
	case '"', '\'':
		var s string
		var err error
		if c == '"' {
			s, err = p.parseDQ()
		} else {
			s, err = p.parseSQ()
		}
		if err != nil {
			return nil, err
		}
		return &Value{Kind: KindString, Pos: p.pos(start), Str: s, Raw: s, Quoted: true, nodes: 1}, nil
	case '(':
		return p.parseBlock()
	case '}', ']', ',', ';', ':', '=':
		return nil, p.errf(start, "expected a value, found %s", p.quoteChar())
	}
	if p.eof() || isNL(p.peek()) {
		return nil, p.errf(start, "expected a value, found %s", p.quoteChar())
	}
	word := p.bareWord()
	if word[0] == '$' && len(word) > 1 {
		return p.variable(word[1:], start)
	}
	return classify(word, p.pos(start))
}

// bareWord reads an unquoted value: everything up to a blank, a line end,
// ',', ';', ']' or '}'. It may hold ':' and '/' (URLs, host:port).
func (p *parser) bareWord() string {
	start := p.off
	for p.off < len(p.src) {
		switch p.src[p.off] {
		case ' ', '\t', '\n', '\r', ',', ';', ']', '}':
			return string(p.src[start:p.off])
		}
		p.off++
	}
	return string(p.src[start:p.off])
}

func (p *parser) parseMap() (*Value, error) {
	open := p.pos(p.off)
	p.off++
	m := newMap()
	p.scopes = append(p.scopes, m)
	err := p.parseBody(m, '}', open)
	p.scopes = p.scopes[:len(p.scopes)-1]
	if err != nil {
		return nil, err
	}
	n := 1
	for _, e := range m.Entries {
		n += e.Value.nodes
	}
	return &Value{Kind: KindMap, Pos: open, Map: m, nodes: n}, nil
}

func (p *parser) parseList() (*Value, error) {
	open := p.pos(p.off)
	p.off++
	v := &Value{Kind: KindList, Pos: open, List: []*Value{}, nodes: 1}
	for {
		p.skipSeparators()
		switch {
		case p.eof():
			return nil, &Error{Pos: open, Msg: "'[' is never closed"}
		case p.peek() == ']':
			p.off++
			return v, nil
		}
		x, err := p.parseValue()
		if err != nil {
			return nil, err
		}
		v.List = append(v.List, x)
		v.nodes += x.nodes
	}
}

// parseDQ reads a double-quoted string with nats-server's escapes
// (\t \n \r \" \\ \xHH) plus \uHHHH.
func (p *parser) parseDQ() (string, error) {
	open := p.off
	p.off++
	var b strings.Builder
	for p.off < len(p.src) {
		c := p.src[p.off]
		switch c {
		case '"':
			p.off++
			return b.String(), nil
		case '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
			continue
		}
		b.WriteByte(c)
		p.off++
	}
	return "", p.errf(open, "string is never closed")
}

func (p *parser) escape(b *strings.Builder) error {
	at := p.off
	p.off++
	c := p.peek()
	p.off++
	switch c {
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case '"', '\\', '/':
		b.WriteByte(c)
	case 'x', 'u':
		n := 2
		if c == 'u' {
			n = 4
		}
		if p.off+n > len(p.src) {
			return p.errf(at, "escape \\%c needs %d hex digits", c, n)
		}
		r, err := strconv.ParseUint(string(p.src[p.off:p.off+n]), 16, 32)
		if err != nil {
			return p.errf(at, "escape \\%c needs %d hex digits", c, n)
		}
		p.off += n
		if c == 'x' {
			b.WriteByte(byte(r))
		} else {
			b.WriteRune(rune(r))
		}
	default:
		p.off = at + 1
		return p.errf(at, "invalid escape %s in string (allowed: \\t \\n \\r \\\" \\\\ \\xHH \\uHHHH)", strconv.Quote("\\"+string(rune(c))))
	}
	return nil
}

// parseSQ reads a single-quoted string: no escapes.
func (p *parser) parseSQ() (string, error) {
	open := p.off
	end := bytes.IndexByte(p.src[p.off+1:], '\'')
	if end < 0 {
		return "", p.errf(open, "string is never closed")
	}
	s := string(p.src[p.off+1 : p.off+1+end])
	p.off += end + 2
	return s, nil
}

// parseBlock reads a `(` ... `)` block string: the text up to a line
// holding only ')'.
func (p *parser) parseBlock() (*Value, error) {
	open := p.off
	p.off++
	rest := p.src[p.off:]
	for i := 0; ; {
		j := bytes.Index(rest[i:], []byte("\n)"))
		if j < 0 {
			return nil, p.errf(open, "'(' block is never closed by a line holding only ')'")
		}
		end := i + j
		after := end + 2
		if after == len(rest) || rest[after] == '\n' || rest[after] == '\r' {
			s := string(rest[:end])
			p.off += after
			return &Value{Kind: KindString, Pos: p.pos(open), Str: s, Raw: s, Quoted: true, nodes: 1}, nil
		}
		i = end + 1
	}
}

// parseInclude reads `include PATH` and parses that file into m, in the
// current variable scope. Paths are relative to the including file.
func (p *parser) parseInclude(m *Map, at Pos) error {
	var path string
	var err error
	switch p.peek() {
	case '"':
		path, err = p.parseDQ()
	case '\'':
		path, err = p.parseSQ()
	default:
		path = p.bareWord()
	}
	if err != nil {
		return err
	}
	if path == "" {
		return &Error{Pos: at, Msg: "include needs a file name"}
	}
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(p.dir, path)
	}
	abs, aerr := filepath.Abs(full)
	if aerr != nil {
		abs = full
	}
	for i, s := range p.st.stack {
		if s == abs {
			chain := append(append([]string{}, p.st.names[i:]...), full)
			return &Error{Pos: at, Msg: "include cycle: " + strings.Join(chain, " -> "), fatal: true}
		}
	}
	if len(p.st.stack) >= maxIncludeDepth {
		return &Error{Pos: at, Msg: fmt.Sprintf("includes nested deeper than %d", maxIncludeDepth)}
	}
	if p.st.includes++; p.st.includes > maxIncludes {
		return &Error{Pos: at, Msg: fmt.Sprintf("more than %d included files", maxIncludes)}
	}
	data, err := p.st.readFile(full)
	if err != nil {
		return &Error{Pos: at, Msg: fmt.Sprintf("include %q: %v", path, unwrapPathError(err))}
	}
	if len(data) > maxFileSize {
		return &Error{Pos: at, Msg: fmt.Sprintf("include %q: file is larger than %d bytes", path, maxFileSize)}
	}
	p.st.stack = append(p.st.stack, abs)
	p.st.names = append(p.st.names, full)
	p.st.files = append(p.st.files, full)
	child := newParser(data, full, filepath.Dir(full), p.st)
	child.scopes = p.scopes
	child.depth = p.depth
	err = child.parseBody(m, 0, Pos{})
	p.st.stack = p.st.stack[:len(p.st.stack)-1]
	p.st.names = p.st.names[:len(p.st.names)-1]
	return err
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// count charges n values against the expansion budget.
func (p *parser) count(n int) error {
	p.st.nodes += n
	if p.st.nodes > maxNodes {
		e := p.errf(p.off, "%v: more than %d values, counting variable references at full size", ErrTooLarge, maxNodes)
		e.fatal = true
		return e
	}
	return nil
}

// variable resolves $name: a key of an enclosing map defined earlier
// (innermost first), else an environment variable. `$2a$...` is a bare
// bcrypt hash, not a variable.
func (p *parser) variable(name string, start int) (*Value, error) {
	at := p.pos(start)
	for _, pre := range []string{"2a$", "2b$", "2y$"} {
		if strings.HasPrefix(name, pre) {
			s := "$" + name
			return &Value{Kind: KindString, Pos: at, Str: s, Raw: s, nodes: 1}, nil
		}
	}
	for i := len(p.scopes) - 1; i >= 0; i-- {
		if e := p.scopes[i].Get(name); e != nil {
			e.Used = true
			if err := p.count(e.Value.nodes); err != nil {
				return nil, err
			}
			return e.Value, nil
		}
	}
	val, ok := p.st.lookup(name)
	if !ok {
		return nil, &Error{Pos: at, Msg: fmt.Sprintf("variable $%s is not defined (no earlier key %q in scope, no environment variable)", name, name), fatal: true}
	}
	for _, n := range p.st.env {
		if n == name {
			return nil, &Error{Pos: at, Msg: fmt.Sprintf("environment variable $%s refers to itself", name), fatal: true}
		}
	}
	if len(p.st.env) >= maxEnvDepth {
		return nil, &Error{Pos: at, Msg: fmt.Sprintf("environment variables refer to each other more than %d deep", maxEnvDepth), fatal: true}
	}
	return p.envValue(name, val, at)
}

// envValue parses an environment variable's text as a value (so `1MB`
// is a size and `true` a boolean, as nats-server does); text that is not
// exactly one value is taken as a plain string.
func (p *parser) envValue(name, val string, at Pos) (*Value, error) {
	p.st.env = append(p.st.env, name)
	defer func() { p.st.env = p.st.env[:len(p.st.env)-1] }()
	if strings.TrimSpace(val) == "" {
		return &Value{Kind: KindString, Pos: at, Str: val, Raw: val, Quoted: true, nodes: 1}, nil
	}
	child := newParser([]byte(val), "$"+name, p.dir, p.st)
	child.scopes = p.scopes
	child.depth = p.depth
	child.skipSpaces()
	v, err := child.parseValue()
	if err == nil {
		child.skipBlank()
		if child.eof() {
			setPos(v, at, 0)
			return v, nil
		}
	}
	if e, ok := err.(*Error); ok && e.fatal {
		// A reference inside the value failed: report it at this
		// reference, the place in the file.
		return nil, &Error{Pos: at, Msg: fmt.Sprintf("in $%s: %s", name, e.Msg), fatal: true}
	}
	return &Value{Kind: KindString, Pos: at, Str: val, Raw: val, Quoted: true, nodes: 1}, nil
}

// setPos gives a value parsed from an environment variable the position
// of the reference.
func setPos(v *Value, at Pos, depth int) {
	if depth > maxDepth {
		return
	}
	v.Pos = at
	switch v.Kind {
	case KindMap:
		for _, e := range v.Map.Entries {
			e.KeyPos = at
			setPos(e.Value, at, depth+1)
		}
	case KindList:
		for _, x := range v.List {
			setPos(x, at, depth+1)
		}
	}
}

// classify turns a bare word into a number, boolean or string.
func classify(word string, at Pos) (*Value, error) {
	v := &Value{Pos: at, Raw: word, nodes: 1}
	if b, ok := parseBool(word); ok {
		v.Kind, v.Bool = KindBool, b
		return v, nil
	}
	digits := word
	if strings.HasPrefix(digits, "-") {
		digits = digits[1:]
	}
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	if n == 0 {
		v.Kind, v.Str = KindString, word
		return v, nil
	}
	if n == len(digits) {
		i, err := strconv.ParseInt(word, 10, 64)
		if err != nil {
			return nil, &Error{Pos: at, Msg: fmt.Sprintf("integer %s is out of range", word)}
		}
		v.Kind, v.Int = KindInt, i
		return v, nil
	}
	if mult, ok := sizeSuffix(digits[n:]); ok {
		i, err := strconv.ParseInt(word[:len(word)-len(digits)+n], 10, 64)
		if err != nil || (i != 0 && (i*mult/mult != i || i*mult/i != mult)) {
			return nil, &Error{Pos: at, Msg: fmt.Sprintf("size %s is out of range", word)}
		}
		v.Kind, v.Int = KindInt, i*mult
		return v, nil
	}
	if digits[n] == '.' && n+1 < len(digits) && strings.Trim(digits[n+1:], "0123456789") == "" {
		f, err := strconv.ParseFloat(word, 64)
		if err != nil {
			return nil, &Error{Pos: at, Msg: fmt.Sprintf("number %s is out of range", word)}
		}
		v.Kind, v.Float = KindFloat, f
		return v, nil
	}
	v.Kind, v.Str = KindString, word // 127.0.0.1:4222, 2s, 10.0.0.0/8
	return v, nil
}

// sizeSuffix is nats-server's: k/m/g/t/p/e are powers of 1000, kb/ki/kib
// (and so on) powers of 1024, any case.
func sizeSuffix(s string) (int64, bool) {
	s = strings.ToLower(s)
	if len(s) == 0 || len(s) > 3 {
		return 0, false
	}
	exp := strings.IndexByte("kmgtpe", s[0]) + 1
	if exp == 0 {
		return 0, false
	}
	base := int64(1000)
	switch s[1:] {
	case "":
	case "b", "i", "ib":
		base = 1024
	default:
		return 0, false
	}
	m := int64(1)
	for range exp {
		m *= base
	}
	return m, true
}

// parseBool reads every spelling of a boolean the format allows
// (docs/CONFIG.md), any case.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "enabled", "enable":
		return true, true
	case "false", "no", "off", "disabled", "disable":
		return false, true
	}
	return false, false
}
