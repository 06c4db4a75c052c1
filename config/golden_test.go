package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
)

var update = flag.Bool("update", false, "rewrite config/testdata/*.golden")

// testEnv is the environment the golden files see ($BUSBAR_* variables).
var testEnv = map[string]string{
	"BUSBAR_PORT":    "4333",
	"BUSBAR_SIZE":    "2MB",
	"BUSBAR_USER":    "envuser",
	"BUSBAR_DEBUG":   "true",
	"BUSBAR_WORDS":   "two words",
	"BUSBAR_LOOP":    "$BUSBAR_LOOP",
	"BUSBAR_TO_PORT": "$BUSBAR_PORT",
	"HOME":           "/home/busbar",
}

func parseTest(t testing.TB, path string) (*Config, error) {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	st := &parseState{lookup: func(k string) (string, bool) { v, ok := testEnv[k]; return v, ok }}
	return parse(data, path, filepath.Dir(path), st)
}

// TestGolden parses each testdata/*.conf and compares the typed options
// (or the error text) with testdata/*.golden. go test -run TestGolden
// -update rewrites them.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.conf")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".conf"), func(t *testing.T) {
			cfg, err := parseTest(t, f)
			got := render(cfg, err)
			if err == nil {
				// The options take effect: the Authenticator builds.
				if _, err := cfg.BrokerOptions(nil); err != nil {
					got += "authenticator: " + err.Error() + "\n"
				}
			}
			golden := strings.TrimSuffix(f, ".conf") + ".golden"
			if *update {
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
				return
			}
			want, rerr := os.ReadFile(golden)
			require.NoError(t, rerr, "no golden file: run go test ./config -run TestGolden -update")
			require.Equal(t, string(want), got)
		})
	}
}

// render prints a parse result: "error" and each error line, or every
// non-zero option as path: value, then warnings and notices.
func render(cfg *Config, err error) string {
	var b strings.Builder
	if err != nil {
		b.WriteString("error\n")
		for _, e := range AsErrors(err) {
			b.WriteString(e.Error() + "\n")
		}
		if AsErrors(err) == nil {
			b.WriteString(err.Error() + "\n")
		}
		return b.String()
	}
	var lines []string
	dump(&lines, "", reflect.ValueOf(*cfg))
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	for _, w := range cfg.Warnings {
		b.WriteString(w.String() + "\n")
	}
	for _, n := range cfg.Notices {
		b.WriteString(strings.Replace(n.String(), "warning:", "notice:", 1) + "\n")
	}
	return strings.ReplaceAll(b.String(), os.TempDir(), "$TMPDIR")
}

var (
	durationType  = reflect.TypeOf(time.Duration(0))
	connTypesType = reflect.TypeOf(auth.ConnTypes(0))
)

func dump(out *[]string, path string, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		if v.Int() != 0 {
			*out = append(*out, path+": "+time.Duration(v.Int()).String())
		}
		return
	case v.Type() == connTypesType:
		var names []string
		for t := auth.ConnStandard; t <= auth.ConnInProcess; t++ {
			if auth.ConnTypes(v.Uint()).Has(t) {
				names = append(names, t.String())
			}
		}
		if len(names) > 0 {
			*out = append(*out, path+": "+strings.Join(names, ","))
		}
		return
	case v.Type().String() == "netip.Prefix":
		*out = append(*out, fmt.Sprintf("%s: %v", path, v.Interface()))
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			dump(out, path, v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || f.Name == "Warnings" || f.Name == "Notices" || f.Name == "Files" {
				continue
			}
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			dump(out, p, v.Field(i))
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			dump(out, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			dump(out, fmt.Sprintf("%s[%v]", path, k), v.MapIndex(k))
		}
	default:
		if !v.IsZero() {
			*out = append(*out, fmt.Sprintf("%s: %#v", path, v.Interface()))
		}
	}
}
