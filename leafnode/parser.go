package leafnode

import (
	"bytes"

	"github.com/busbar/busbar/internal/wire"
)

// handler receives the operations a hub sends a leaf. Every []byte
// argument aliases the parser's input or its buffers and is valid only
// until the method returns.
type handler interface {
	onInfo(arg []byte) error
	onPing() error
	onPong() error
	onErr(arg []byte) error
	// onSub is LS+ (queue nil for plain interest; weight 1 then).
	onSub(subject, queue []byte, weight int) error
	// onUnsub is LS-.
	onUnsub(subject, queue []byte) error
	// onMsg is LMSG/HMSG: msg holds headers (hdrLen bytes, -1: none) and
	// payload; queues lists the queue groups this server was picked for.
	onMsg(subject, reply []byte, queues [][]byte, hdrLen int, msg []byte) error
}

// parser reads the hub-to-leaf protocol in place: a control line or
// message wholly inside one read is never copied; one split across reads
// is collected in buffers the parser reuses. Read loop only.
type parser struct {
	h          handler
	maxControl int
	maxPayload int

	line    []byte // partial control line
	split   bool
	payload bool // reading a message body

	// Pending LMSG/HMSG.
	subject, reply []byte
	queues         [][]byte
	hdrLen, size   int
	args           []byte // copy of the pending arguments once the body spans reads
	msg            []byte // partial body (+CRLF), reused
	stashed        bool
	fields         [][]byte // scratch for splitting arguments
}

func newParser(h handler, maxControl, maxPayload int) *parser {
	return &parser{h: h, maxControl: maxControl, maxPayload: maxPayload}
}

// parse consumes buf.
func (p *parser) parse(buf []byte) error {
	for len(buf) > 0 {
		var err error
		if p.payload {
			buf, err = p.body(buf)
		} else {
			buf, err = p.control(buf)
		}
		if err != nil {
			return err
		}
	}
	if p.payload && !p.stashed {
		p.stash() // arguments alias the caller's buffer, about to be reused
	}
	return nil
}

func (p *parser) control(buf []byte) ([]byte, error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(p.line)+len(buf) > p.maxControl+1 {
			return nil, errControlLine
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
	if len(line) > p.maxControl {
		return nil, errControlLine
	}
	err := p.dispatch(line)
	if !p.payload {
		p.line = p.line[:0]
	}
	return rest, err
}

func (p *parser) body(buf []byte) ([]byte, error) {
	need := p.size + 2
	if !p.stashed && len(buf) >= need {
		if buf[p.size] != '\r' || buf[p.size+1] != '\n' {
			return nil, errParse
		}
		err := p.deliver(buf[:p.size])
		return buf[need:], err
	}
	if !p.stashed {
		p.stash()
	}
	n := min(need-len(p.msg), len(buf))
	p.msg = append(p.msg, buf[:n]...)
	if len(p.msg) < need {
		return nil, nil
	}
	if p.msg[p.size] != '\r' || p.msg[p.size+1] != '\n' {
		return nil, errParse
	}
	err := p.deliver(p.msg[:p.size])
	return buf[n:], err
}

// stash copies the pending arguments into p.args so the body can span
// reads; p.msg is emptied for the body.
func (p *parser) stash() {
	p.stashed = true
	p.args = append(p.args[:0], p.subject...)
	p.args = append(p.args, p.reply...)
	for _, q := range p.queues {
		p.args = append(p.args, q...)
	}
	off := 0
	p.subject, off = p.args[off:off+len(p.subject):off+len(p.subject)], off+len(p.subject)
	if p.reply != nil {
		p.reply, off = p.args[off:off+len(p.reply):off+len(p.reply)], off+len(p.reply)
	}
	for i, q := range p.queues {
		p.queues[i], off = p.args[off:off+len(q):off+len(q)], off+len(q)
	}
	p.msg = p.msg[:0]
}

func (p *parser) deliver(msg []byte) error {
	subj, reply, qs, hl := p.subject, p.reply, p.queues, p.hdrLen
	p.payload, p.stashed = false, false
	p.subject, p.reply = nil, nil
	p.line = p.line[:0]
	err := p.h.onMsg(subj, reply, qs, hl, msg)
	p.queues = p.queues[:0]
	if cap(p.msg) > 1<<20 {
		p.msg = nil // do not keep a huge body buffer
	}
	return err
}

func (p *parser) dispatch(line []byte) error {
	op, arg := wire.SplitOp(line)
	switch string(op) { // no allocation: the conversion is only compared
	case "LMSG", "lmsg":
		return p.msgArgs(arg, false)
	case "HMSG", "hmsg":
		return p.msgArgs(arg, true)
	case "LS+", "ls+":
		return p.subArgs(arg)
	case "LS-", "ls-":
		return p.unsubArgs(arg)
	case "PING", "ping":
		return p.h.onPing()
	case "PONG", "pong":
		return p.h.onPong()
	case "INFO", "info":
		return p.h.onInfo(arg)
	case "-ERR", "-err":
		return p.h.onErr(arg)
	case "+OK", "+ok":
		return nil
	}
	return errUnknownOp
}

// splitArgs cuts arg on blanks into p.fields (reused).
func (p *parser) splitArgs(arg []byte) [][]byte {
	f := p.fields[:0]
	for len(arg) > 0 {
		i := 0
		for i < len(arg) && arg[i] != ' ' && arg[i] != '\t' {
			i++
		}
		if i > 0 {
			f = append(f, arg[:i])
		}
		for i < len(arg) && (arg[i] == ' ' || arg[i] == '\t') {
			i++
		}
		arg = arg[i:]
	}
	p.fields = f
	return f
}

// msgArgs reads the arguments of LMSG (hdr false) or HMSG:
//
//	subject [reply] [hdr] size
//	subject + reply queue... [hdr] size
//	subject | queue... [hdr] size
func (p *parser) msgArgs(arg []byte, hdr bool) error {
	f := p.splitArgs(arg)
	nsize := 1
	if hdr {
		nsize = 2
	}
	if len(f) < 1+nsize {
		return errParse
	}
	rest := f[1 : len(f)-nsize]
	var reply []byte
	p.queues = p.queues[:0]
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && !(len(rest[0]) == 1 && (rest[0][0] == '+' || rest[0][0] == '|')):
		reply = rest[0]
	case len(rest[0]) == 1 && rest[0][0] == '+' && len(rest) >= 3:
		reply = rest[1]
		p.queues = append(p.queues, rest[2:]...)
	case len(rest[0]) == 1 && rest[0][0] == '|' && len(rest) >= 2:
		p.queues = append(p.queues, rest[1:]...)
	default:
		return errParse
	}
	total := wire.ParseSize(f[len(f)-1])
	if total < 0 {
		return errParse
	}
	hl := -1
	if hdr {
		if hl = wire.ParseSize(f[len(f)-2]); hl < 0 || hl > total {
			return errParse
		}
	}
	if total > p.maxPayload {
		return errPayload
	}
	p.subject, p.reply, p.hdrLen, p.size = f[0], reply, hl, total
	p.payload = true
	return nil
}

// subArgs reads LS+ "subject [queue weight]".
func (p *parser) subArgs(arg []byte) error {
	f := p.splitArgs(arg)
	switch len(f) {
	case 1:
		return p.h.onSub(f[0], nil, 1)
	case 3:
		w := wire.ParseSize(f[2])
		if w < 1 {
			w = 1 // a missing or malformed weight counts as one member, as in nats-server
		}
		return p.h.onSub(f[0], f[1], w)
	case 2:
		return p.h.onSub(f[0], f[1], 1)
	}
	return errParse
}

// unsubArgs reads LS- "subject [queue]".
func (p *parser) unsubArgs(arg []byte) error {
	f := p.splitArgs(arg)
	switch len(f) {
	case 1:
		return p.h.onUnsub(f[0], nil)
	case 2:
		return p.h.onUnsub(f[0], f[1])
	}
	return errParse
}
