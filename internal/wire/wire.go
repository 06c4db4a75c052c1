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
