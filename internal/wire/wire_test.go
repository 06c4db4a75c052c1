package wire

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "42": 42, "4294967295": 4294967295, "": -1, "-1": -1, "1a": -1, "12345678901": -1, " 1": -1} {
		if got := ParseSize([]byte(in)); got != want {
			t.Errorf("ParseSize(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestSplitOp(t *testing.T) {
	for _, c := range []struct{ line, op, arg string }{
		{"PUB foo 5", "PUB", "foo 5"},
		{"\t sub\tfoo 1 \t", "sub", "foo 1"},
		{"PING", "PING", ""},
		{"  ", "", ""},
	} {
		op, arg := SplitOp([]byte(c.line))
		if string(op) != c.op || string(arg) != c.arg {
			t.Errorf("SplitOp(%q) = %q, %q; want %q, %q", c.line, op, arg, c.op, c.arg)
		}
	}
}
