package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestValues checks the scalar rules: sizes, booleans, numbers, strings.
func TestValues(t *testing.T) {
	for _, tc := range []struct {
		label, in string
		want      any
	}{
		{"int", "1234", int64(1234)},
		{"negative", "-5", int64(-5)},
		{"k is 1000", "2k", int64(2000)},
		{"kb is 1024", "2KB", int64(2048)},
		{"ki", "1ki", int64(1024)},
		{"mb", "3mb", int64(3 << 20)},
		{"m is a million", "3M", int64(3000000)},
		{"gib", "1GiB", int64(1 << 30)},
		{"g", "1g", int64(1000000000)},
		{"float", "2.5", 2.5},
		{"ip is a string", "127.0.0.1", "127.0.0.1"},
		{"host:port", "127.0.0.1:4222", "127.0.0.1:4222"},
		{"duration word", "2s", "2s"},
		{"url", "nats://a:4222", "nats://a:4222"},
		{"cidr", "10.0.0.0/8", "10.0.0.0/8"},
		{"true", "true", true},
		{"YES", "YES", true},
		{"on", "on", true},
		{"enabled", "enabled", true},
		{"false", "False", false},
		{"no", "no", false},
		{"off", "off", false},
		{"disabled", "disabled", false},
		{"quoted bool is a string", `"true"`, "true"},
		{"single quotes keep backslashes", `'a\nb'`, `a\nb`},
		{"escapes", `"a\tb\x41\u00e9\"\\"`, "a\tbAé\"\\"},
		{"bcrypt", "$2a$11$abc", "$2a$11$abc"},
		{"list", `[1, "two", three]`, []any{int64(1), "two", "three"}},
		{"list by lines", "[\n a\n b # c\n]", []any{"a", "b"}},
		{"map", "{a: 1, b = 2; c 3}", map[string]any{"a": int64(1), "b": int64(2), "c": int64(3)}},
		{"map by blanks", "{user: foo password: foopwd}", map[string]any{"user": "foo", "password": "foopwd"}},
	} {
		t.Run(tc.label, func(t *testing.T) {
			tr, err := parseTree([]byte("k: "+tc.in+"\n"), "t.conf", ".", &parseState{})
			require.NoError(t, err)
			require.Equal(t, tc.want, tr.root.Get("k").Value.Interface())
		})
	}
}

func TestPositions(t *testing.T) {
	tr, err := parseTree([]byte("# c\na: 1\n  b {\n    c: \"x\"\n  }\n"), "p.conf", ".", &parseState{})
	require.NoError(t, err)
	a := tr.root.Get("a")
	require.Equal(t, Pos{"p.conf", 2, 1}, a.KeyPos)
	require.Equal(t, Pos{"p.conf", 2, 4}, a.Value.Pos)
	c := tr.root.Get("b").Value.Map.Get("c")
	require.Equal(t, Pos{"p.conf", 4, 5}, c.KeyPos)
	require.Equal(t, Pos{"p.conf", 4, 8}, c.Value.Pos)
}

func TestByteOrderMark(t *testing.T) {
	cfg, err := Parse([]byte("\xef\xbb\xbfport: 4555\n"), "bom.conf")
	require.NoError(t, err)
	require.Equal(t, 4555, cfg.NATS.Port)
}

func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{`"2s"`, 2 * time.Second}, {"2s", 2 * time.Second}, {"1m", time.Minute}, {"90", 90 * time.Second},
		{"1.5", 1500 * time.Millisecond}, {`"1h30m"`, 90 * time.Minute}, {"0", 0},
	} {
		cfg, err := Parse([]byte("ping_interval: "+tc.in), "d.conf")
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, cfg.Broker.PingInterval, tc.in)
	}
}

// TestBounds: hostile inputs end quickly with an error, never a hang, a
// crash or a blow-up.
func TestBounds(t *testing.T) {
	dir := t.TempDir()
	deep := strings.Repeat("a: {", 10000) + strings.Repeat("}", 10000)
	deepList := "a: " + strings.Repeat("[", 100000)
	// Each level references the previous one 10 times: 10^9 values if
	// expanded.
	var laughs strings.Builder
	laughs.WriteString("l0: [1,2,3,4,5,6,7,8,9,10]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&laughs, "l%d: [%s]\n", i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("$l%d,", i-1), 10), ","))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "twice.conf"), []byte("include twice.conf\ninclude twice.conf\n"), 0o644))
	for i := 0; i < 20; i++ { // a chain of distinct files 20 deep
		require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("c%d.conf", i)), []byte(fmt.Sprintf("include c%d.conf\n", i+1)), 0o644))
	}
	for _, tc := range []struct{ label, in, want string }{
		{"deep maps", deep, "nested deeper than 64"},
		{"deep lists", deepList, "nested deeper than 64"},
		{"laughs", laughs.String(), "too large"},
		{"huge unclosed string", `a: "` + strings.Repeat("x", 8<<20), "string is never closed"},
		{"self include", "include twice.conf", "include cycle"},
		{"include chain", "include c0.conf", "includes nested deeper than 16"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			start := time.Now()
			_, err := Parse([]byte(tc.in), filepath.Join(dir, "main.conf"))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

// FuzzParse: any input parses or fails with positioned errors; never a
// panic, and within the bounds.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.conf")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{"", "{", "a: [", `a: "\x`, "a: $", "include", "a: (\nb\n)", "a b c d", "a: 1k1", "$2a$", "a:\n", "a: {b: $a}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		st := &parseState{
			readFile: func(string) ([]byte, error) { return []byte("x: 1\ninclude y.conf\n"), nil },
			lookup:   func(k string) (string, bool) { return "$" + k, k == "LOOP" },
		}
		cfg, err := parse(data, "fuzz.conf", ".", st)
		if err != nil {
			es := AsErrors(err)
			if len(es) == 0 {
				t.Fatalf("error without position: %v", err)
			}
			for _, e := range es {
				if e.Pos.Line < 1 || e.Pos.Col < 1 {
					t.Fatalf("bad position in %q", e.Error())
				}
			}
			return
		}
		if cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
