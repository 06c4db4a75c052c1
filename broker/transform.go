package broker

import (
	"bytes"
	"fmt"
	"strings"
)

// transform maps subjects matching from onto to, wildcards by position.
// nil means the identity.
type transform struct {
	from []string
	to   []string // literal tokens; "*" and ">" take the captures
}

const maxCaptures = 16

func newTransform(from, to string) (*transform, error) {
	if from == to {
		return nil, nil
	}
	t := &transform{from: strings.Split(from, "."), to: strings.Split(to, ".")}
	fstars, tstars := strings.Count("."+from+".", ".*."), 0
	for i, tok := range t.to {
		switch tok {
		case "*":
			tstars++
		case ">":
			if t.from[len(t.from)-1] != ">" || i != len(t.to)-1 {
				return nil, fmt.Errorf("cannot map %q to %q: \">\" needs \">\" in %q", from, to, from)
			}
		}
	}
	if tstars > fstars || fstars > maxCaptures {
		return nil, fmt.Errorf("cannot map %q to %q: it has more \"*\" than %q", from, to, from)
	}
	return t, nil
}

// apply appends the mapping of subj (a literal subject from matches) to
// dst. Publisher goroutine; no allocation once dst has grown.
func (t *transform) apply(dst, subj []byte) []byte {
	var caps [maxCaptures][]byte
	var rest []byte
	n := 0
	for i, ft := range t.from {
		tok, r, _ := bytes.Cut(subj, []byte{'.'})
		switch ft {
		case "*":
			caps[n] = tok
			n++
		case ">":
			rest = subj
		}
		if ft == ">" || i == len(t.from)-1 {
			break
		}
		subj = r
	}
	n = 0
	for i, tok := range t.to {
		if i > 0 {
			dst = append(dst, '.')
		}
		switch tok {
		case "*":
			dst = append(dst, caps[n]...)
			n++
		case ">":
			dst = append(dst, rest...)
		default:
			dst = append(dst, tok...)
		}
	}
	return dst
}
