package subject

import (
	"strings"
	"testing"
)

// refMatch is a slow reference for Match on valid input, written from the
// NATS rules with strings.Split.
func refMatch(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// refValid is a slow reference for ValidLiteral and ValidFilter.
func refValid(s string, wild bool) bool {
	if s == "" || strings.ContainsAny(s, " \t\n\f\r") {
		return false
	}
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return false
		case t == "*" && !wild:
			return false
		case t == ">" && (!wild || i != len(toks)-1):
			return false
		}
	}
	return true
}

// FuzzMatch checks Match and the validators against slow references and
// against properties that must hold for every valid input.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"foo.bar", "foo.bar"}, {"foo.*", "foo.bar"}, {"foo.*", "foo.bar.baz"},
		{"foo.>", "foo"}, {">", "a.b.c"}, {"*.>", "a"}, {"a*b", "a*b"},
		{"foo..bar", "foo.bar"}, {"foo.>.bar", "foo.x.bar"}, {"", ""},
		{"foo bar", "foo bar"}, {"*", "*"}, {"a.b.c.d.e.f", "a.b.c.d.e.f"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, subj string) {
		bf, bs := []byte(filter), []byte(subj)
		fv, lv := ValidFilter(bf), ValidLiteral(bs)
		if fv != refValid(filter, true) {
			t.Fatalf("ValidFilter(%q) = %v", filter, fv)
		}
		if lv != refValid(subj, false) {
			t.Fatalf("ValidLiteral(%q) = %v", subj, lv)
		}
		if ValidLiteral(bf) && !fv {
			t.Fatalf("%q is a valid literal but not a valid filter", filter)
		}
		if lv && (!IsLiteral(bs) || !Match(bs, bs) || !Match([]byte(">"), bs)) {
			t.Fatalf("literal %q: IsLiteral, self match or '>' match failed", subj)
		}
		if fv && lv && Match(bf, bs) != refMatch(filter, subj) {
			t.Fatalf("Match(%q, %q) = %v, reference disagrees", filter, subj, !refMatch(filter, subj))
		}
		if lv {
			checkStarred(t, subj)
		}
		Match(bf, bs) // any input: must return, never panic
	})
}

// checkStarred checks that the literal subj matches itself with any one
// token replaced by "*", and with any suffix replaced by ">".
func checkStarred(t *testing.T, subj string) {
	toks := strings.Split(subj, ".")
	for i := range toks {
		w := append([]string(nil), toks...)
		w[i] = "*"
		if f := strings.Join(w, "."); !Match([]byte(f), []byte(subj)) {
			t.Fatalf("Match(%q, %q) = false", f, subj)
		}
		if f := strings.Join(append(toks[:i:i], ">"), "."); !Match([]byte(f), []byte(subj)) {
			t.Fatalf("Match(%q, %q) = false", f, subj)
		}
	}
}
