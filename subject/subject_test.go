package subject

import "testing"

func TestValidLiteral(t *testing.T) {
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"single token", "foo", true},
		{"three tokens", "foo.bar.baz", true},
		{"embedded star", "foo.a*b", true},
		{"embedded gt", "foo.a>b.c", true},
		{"star prefix token", "*a", true},
		{"utf8", "föö.bär", true},
		{"empty", "", false},
		{"only dot", ".", false},
		{"leading dot", ".foo", false},
		{"trailing dot", "foo.", false},
		{"double dot", "foo..bar", false},
		{"star token", "foo.*", false},
		{"gt token", "foo.>", false},
		{"lone star", "*", false},
		{"lone gt", ">", false},
		{"space", "foo bar", false},
		{"lone space token", "foo. .bar", false},
		{"tab", "foo\tbar", false},
		{"cr", "foo.\r", false},
		{"lf", "foo\n", false},
		{"form feed", "\ffoo", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidLiteral([]byte(tt.s)); got != tt.want {
				t.Errorf("ValidLiteral(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"literal", "foo.bar", true},
		{"star first", "*.bar", true},
		{"star middle", "foo.*.baz", true},
		{"star last", "foo.*", true},
		{"all stars", "*.*.*", true},
		{"gt last", "foo.>", true},
		{"lone gt", ">", true},
		{"lone star", "*", true},
		{"star then gt", "*.>", true},
		{"embedded wildcards", "a*.>b.c", true},
		{"gt middle", "foo.>.bar", false},
		{"gt first", ">.foo", false},
		{"gt twice", ">.>", false},
		{"empty", "", false},
		{"empty token", "foo..*", false},
		{"trailing dot after gt", "foo.>.", false},
		{"space", "foo.* ", false},
		{"tab token", "foo.\t", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidFilter([]byte(tt.s)); got != tt.want {
				t.Errorf("ValidFilter(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestIsLiteral(t *testing.T) {
	tests := []struct {
		name string
		s    string
		want bool
	}{
		{"plain", "foo.bar", true},
		{"embedded", "foo.a*.b>", true},
		{"star", "foo.*", false},
		{"gt", "foo.>", false},
		{"star first", "*.foo", false},
		{"lone gt", ">", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsLiteral([]byte(tt.s)); got != tt.want {
				t.Errorf("IsLiteral(%q) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name, filter, subj string
		want               bool
	}{
		{"equal", "foo.bar", "foo.bar", true},
		{"different", "foo.bar", "foo.baz", false},
		{"case sensitive", "foo.bar", "foo.Bar", false},
		{"filter longer", "foo.bar", "foo", false},
		{"filter shorter", "foo", "foo.bar", false},
		{"prefix token", "foo.ba", "foo.bar", false},
		{"star one token", "foo.*", "foo.bar", true},
		{"star not two tokens", "foo.*", "foo.bar.baz", false},
		{"star not zero tokens", "foo.*", "foo", false},
		{"star first", "*.bar", "foo.bar", true},
		{"star middle", "foo.*.baz", "foo.bar.baz", true},
		{"star middle mismatch", "foo.*.baz", "foo.bar.qux", false},
		{"gt one token", "foo.>", "foo.bar", true},
		{"gt many tokens", "foo.>", "foo.bar.baz.qux", true},
		{"gt not zero tokens", "foo.>", "foo", false},
		{"gt prefix mismatch", "foo.>", "bar.baz", false},
		{"lone gt", ">", "foo.bar.baz", true},
		{"lone gt single", ">", "foo", true},
		{"lone star", "*", "foo", true},
		{"lone star two tokens", "*", "foo.bar", false},
		{"star then gt", "*.>", "a.b", true},
		{"star then gt short", "*.>", "a", false},
		{"embedded star literal", "a*b", "axb", false},
		{"embedded star itself", "a*b", "a*b", true},
		{"empty filter", "", "foo", false},
		{"empty subject", ">", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Match([]byte(tt.filter), []byte(tt.subj)); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.subj, got, tt.want)
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	f, s := []byte("foo.*.baz.>"), []byte("foo.bar.baz.qux.quux")
	allocs := testing.AllocsPerRun(100, func() {
		_ = Match(f, s) && ValidFilter(f) && ValidLiteral(s) && IsLiteral(s)
	})
	if allocs != 0 {
		t.Errorf("allocations = %v, want 0", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	f, s := []byte("foo.*.baz.>"), []byte("foo.bar.baz.qux.quux")
	b.ReportAllocs()
	for b.Loop() {
		Match(f, s)
	}
}
