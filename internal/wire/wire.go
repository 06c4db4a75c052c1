// Package wire holds the small pieces the text protocols' parsers share
// (natsproto's client protocol and leafnode's leaf protocol).
package wire

// ParseSize reads a non-negative decimal of at most 10 digits, as NATS
// sizes are written; -1 when b is not one.
func ParseSize(b []byte) int {
	if len(b) == 0 || len(b) > 10 {
		return -1
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// SplitOp separates a protocol line's operation name from its arguments
// (blanks are spaces or tabs; both ends trimmed).
func SplitOp(line []byte) (op, arg []byte) {
	line = TrimSpace(line)
	for i, c := range line {
		if c == ' ' || c == '\t' {
			return line[:i], TrimSpace(line[i+1:])
		}
	}
	return line, nil
}

// TrimSpace cuts spaces and tabs from both ends of b.
func TrimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
