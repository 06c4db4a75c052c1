// Package subject implements NATS subject syntax: validation of publish
// subjects and subscription filters, and matching of one against the other.
//
// A subject is a sequence of tokens separated by '.'. In a filter the
// whole token "*" matches exactly one token and the whole token ">", allowed
// only last, matches one or more tokens. As in nats-server, '*' and '>' are
// wildcards only when they are a whole token: "a*b" is an ordinary token.
// Tokens are case-sensitive.
//
// Every function only reads its arguments, keeps no reference to them after
// it returns, and allocates nothing.
package subject

const (
	sep = '.'
	pwc = '*' // partial wildcard: exactly one token
	fwc = '>' // full wildcard: one or more trailing tokens
)

// ValidLiteral reports whether s is a valid publish subject: non-empty, no
// empty token, no whole-token wildcard and no whitespace (space, \t, \n, \f,
// \r, the set nats-server rejects).
func ValidLiteral(s []byte) bool {
	return valid(s, false)
}

// ValidFilter reports whether s is a valid subscription filter: the rules of
// ValidLiteral, except that a whole-token "*" may appear anywhere and a
// whole-token ">" may appear as the last token.
func ValidFilter(s []byte) bool {
	return valid(s, true)
}

// valid checks the syntax of s, allowing wildcard tokens when wild is true.
func valid(s []byte, wild bool) bool {
	if len(s) == 0 {
		return false
	}
	for {
		tok, rest, more := cut(s)
		if len(tok) == 0 || hasSpace(tok) {
			return false
		}
		if len(tok) == 1 && (tok[0] == pwc || tok[0] == fwc) {
			if !wild || (tok[0] == fwc && more) {
				return false
			}
		}
		if !more {
			return true
		}
		s = rest
	}
}

// IsLiteral reports whether s holds no whole-token wildcard. It does not
// check the rest of the syntax; see ValidLiteral.
func IsLiteral(s []byte) bool {
	for {
		tok, rest, more := cut(s)
		if isWild(tok) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// Match reports whether the literal subject subj matches filter. Both are
// assumed valid (ValidFilter, ValidLiteral); for other input the answer is
// unspecified but Match still returns. A wildcard token in subj is compared
// as plain bytes.
func Match(filter, subj []byte) bool {
	if len(filter) == 0 || len(subj) == 0 {
		return false
	}
	for {
		ft, frest, fmore := cut(filter)
		st, srest, smore := cut(subj)
		if len(ft) == 1 && ft[0] == fwc {
			return true // subj still has at least the token st
		}
		if !(len(ft) == 1 && ft[0] == pwc) && string(ft) != string(st) {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subj = frest, srest
	}
}

// cut splits s at its first '.': the token before it, the remainder after
// it, and whether there was a separator at all. The results alias s.
func cut(s []byte) (tok, rest []byte, more bool) {
	for i, c := range s {
		if c == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, nil, false
}

// isWild reports whether tok is the whole-token wildcard "*" or ">".
func isWild(tok []byte) bool {
	return len(tok) == 1 && (tok[0] == pwc || tok[0] == fwc)
}

// hasSpace reports whether tok holds a character nats-server treats as
// whitespace in a subject.
func hasSpace(tok []byte) bool {
	for _, c := range tok {
		switch c {
		case ' ', '\t', '\n', '\f', '\r':
			return true
		}
	}
	return false
}
