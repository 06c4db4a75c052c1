package natsproto

import (
	"bytes"

	"github.com/busbar/busbar/internal/wire"
)

// handler receives the client operations the parser recognizes. Every
// []byte argument aliases the parser's input or its internal buffers and
// is valid only until the method returns.
type handler interface {
	onConnect(arg []byte) error
	// onPub gets msg = headers+payload. owned: msg was allocated for this
	// message alone (it spanned reads) and the handler may keep it.
	onPub(subject, reply []byte, hdrLen int, msg []byte, owned bool) error
	onSub(subject, queue, sid []byte) error
	onUnsub(sid []byte, max int64) error
	onPing() error
	onPong() error
}

type parseState uint8

const (
	stateOp      parseState = iota // reading a control line
	statePayload                   // reading size+2 bytes of message
)

// parser is the NATS client-protocol parser. It works in place on the
// bytes handed to parse: a control line or payload wholly inside one read
// is never copied. An op split across reads is collected into line (for
// the control line) and msg (for the payload), both bounded by the
// connection's limits. Read loop only.
type parser struct {
	h          handler
	maxControl int
	maxPayload int

	state parseState
	line  []byte // partial control line carried over from an earlier read
	split bool   // line holds a partial line

	// Pending PUB/HPUB, set when its control line was read.
	subject, reply []byte
	hdrLen, size   int
	args           []byte // copy of subject+reply when the payload spans reads
	msg            []byte // partial payload (+CRLF) carried over
}

func newParser(h handler, maxControl, maxPayload int) *parser {
	return &parser{h: h, maxControl: maxControl, maxPayload: maxPayload}
}

// parse consumes buf. A returned error ends the connection; the error is
// one of this package's sentinels (see errors.go).
func (p *parser) parse(buf []byte) error {
	for len(buf) > 0 {
		var err error
		if p.state == stateOp {
			buf, err = p.controlLine(buf)
		} else {
			buf, err = p.payload(buf)
		}
		if err != nil {
			return err
		}
	}
	if p.state == statePayload && p.msg == nil {
		// The read ended between a PUB's control line and its payload:
		// subject and reply alias the caller's buffer, which is about to
		// be reused.
		p.stashArgs()
		p.msg = make([]byte, 0, p.size+2)
	}
	return nil
}

// controlLine reads up to and including the next '\n' and dispatches it.
func (p *parser) controlLine(buf []byte) ([]byte, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(p.line)+len(buf) > p.maxControl+1 { // +1: a CR may still be dropped
			return nil, errMaxControlLine
		}
		p.line = append(p.line, buf...)
		p.split = true
		return nil, nil
	}
	var line []byte
	if p.split {
		p.line = append(p.line, buf[:i]...)
		line, p.split = p.line, false
	} else {
		line = buf[:i]
	}
	rest := buf[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	err := p.dispatch(line)
	if p.state == stateOp {
		// Reuse p.line's storage, unless a pending PUB's subject points
		// into it (publish resets it then).
		p.line = p.line[:0]
	}
	return rest, err
}

// payload consumes the message body of a pending PUB/HPUB.
func (p *parser) payload(buf []byte) ([]byte, error) {
	need := p.size + 2
	if p.msg == nil && len(buf) >= need {
		if buf[p.size] != '\r' || buf[p.size+1] != '\n' {
			return nil, errUnknownOp // nats-server's parser: no CR where the payload ends
		}
		err := p.publish(buf[:p.size], false)
		return buf[need:], err
	}
	if p.msg == nil {
		// The payload spans reads (see the end of parse).
		p.stashArgs()
		p.msg = make([]byte, 0, need)
	}
	n := min(need-len(p.msg), len(buf))
	p.msg = append(p.msg, buf[:n]...)
	if len(p.msg) < need {
		return nil, nil
	}
	if p.msg[p.size] != '\r' || p.msg[p.size+1] != '\n' {
		return nil, errUnknownOp
	}
	msg := p.msg[:p.size:p.size]
	p.msg = nil
	return buf[n:], p.publish(msg, true)
}

func (p *parser) stashArgs() {
	p.args = append(append(p.args[:0], p.subject...), p.reply...)
	p.subject = p.args[:len(p.subject):len(p.subject)]
	if p.reply != nil {
		p.reply = p.args[len(p.subject):]
	}
}

func (p *parser) publish(msg []byte, owned bool) error {
	subj, reply, hdr := p.subject, p.reply, p.hdrLen
	p.state, p.subject, p.reply = stateOp, nil, nil
	p.line = p.line[:0]
	return p.h.onPub(subj, reply, hdr, msg, owned)
}

// directBuf returns the unfilled part of a pending payload that spans
// reads, when it is large enough to read into straight from the socket
// (saving the copy out of the read buffer), or nil.
func (p *parser) directBuf() []byte {
	if p.state != statePayload || p.msg == nil || cap(p.msg)-len(p.msg) < directMin {
		return nil
	}
	return p.msg[len(p.msg):cap(p.msg)]
}

// directMin is the smallest remainder read directly into the payload.
const directMin = 4096

// directFilled accounts n bytes read into the slice directBuf returned.
func (p *parser) directFilled(n int) error {
	p.msg = p.msg[:len(p.msg)+n]
	if len(p.msg) < cap(p.msg) {
		return nil
	}
	if p.msg[p.size] != '\r' || p.msg[p.size+1] != '\n' {
		return errUnknownOp
	}
	msg := p.msg[:p.size:p.size]
	p.msg = nil
	return p.publish(msg, true)
}

// dispatch handles one complete control line (without CRLF).
func (p *parser) dispatch(line []byte) error {
	if len(line) > p.maxControl {
		return errMaxControlLine
	}
	op, arg := wire.SplitOp(line)
	switch {
	case eqFold(op, "PUB"):
		return p.pubArgs(arg, false)
	case eqFold(op, "HPUB"):
		return p.pubArgs(arg, true)
	case eqFold(op, "SUB"):
		return p.subArgs(arg)
	case eqFold(op, "UNSUB"):
		return p.unsubArgs(arg)
	case eqFold(op, "PING"):
		return p.h.onPing()
	case eqFold(op, "PONG"):
		return p.h.onPong()
	case eqFold(op, "CONNECT"):
		return p.h.onConnect(arg)
	case eqFold(op, "+OK"), eqFold(op, "-ERR"):
		return nil // a client echoing server ops is harmless
	}
	return errUnknownOp
}

// eqFold compares an ASCII op name case-insensitively (s is upper case).
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// fields splits arg on spaces and tabs into at most len(out) fields; it
// returns the count, or -1 when there are more.
func fields(arg []byte, out [][]byte) int {
	n := 0
	for len(arg) > 0 {
		i := 0
		for i < len(arg) && arg[i] != ' ' && arg[i] != '\t' {
			i++
		}
		if i > 0 {
			if n == len(out) {
				return -1
			}
			out[n] = arg[:i]
			n++
		}
		for i < len(arg) && (arg[i] == ' ' || arg[i] == '\t') {
			i++
		}
		arg = arg[i:]
	}
	return n
}

// pubArgs reads "subject [reply] size" or, for HPUB,
// "subject [reply] hdr_size total_size".
func (p *parser) pubArgs(arg []byte, hdr bool) error {
	var f [4][]byte
	n := fields(arg, f[:])
	var subj, reply, hs, ts []byte
	switch {
	case !hdr && n == 2:
		subj, ts = f[0], f[1]
	case !hdr && n == 3:
		subj, reply, ts = f[0], f[1], f[2]
	case hdr && n == 3:
		subj, hs, ts = f[0], f[1], f[2]
	case hdr && n == 4:
		subj, reply, hs, ts = f[0], f[1], f[2], f[3]
	default:
		return errParser
	}
	size := wire.ParseSize(ts)
	if size < 0 {
		return errParser
	}
	hl := 0
	if hdr {
		if hl = wire.ParseSize(hs); hl < 0 || hl > size {
			return errParser
		}
	}
	if size > p.maxPayload {
		return errMaxPayload
	}
	p.subject, p.reply, p.hdrLen, p.size = subj, reply, hl, size
	if !hdr {
		p.hdrLen = -1
	}
	p.state = statePayload
	return nil
}

// subArgs reads "subject [queue] sid".
func (p *parser) subArgs(arg []byte) error {
	var f [3][]byte
	switch fields(arg, f[:]) {
	case 2:
		return p.h.onSub(f[0], nil, f[1])
	case 3:
		return p.h.onSub(f[0], f[1], f[2])
	}
	return errParser
}

// unsubArgs reads "sid [max]".
func (p *parser) unsubArgs(arg []byte) error {
	var f [2][]byte
	switch fields(arg, f[:]) {
	case 1:
		return p.h.onUnsub(f[0], 0)
	case 2:
		max := wire.ParseSize(f[1])
		if max < 0 {
			return errParser
		}
		return p.h.onUnsub(f[0], int64(max))
	}
	return errParser
}
