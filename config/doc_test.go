package config

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConfigDocCoversEveryKey (issue 18): docs/CONFIG.md names every key
// the decoder reads (each key of a field table and each alias) and every
// key it accepts with a warning, as `key`. The keys are read from this
// package's source, so a key added without documentation fails here.
func TestConfigDocCoversEveryKey(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "CONFIG.md"))
	if err != nil {
		t.Fatalf("docs/CONFIG.md: %v", err)
	}
	keys := decoderKeys(t)
	if len(keys) < 150 {
		t.Fatalf("found only %d keys in the decoder: the scan is broken", len(keys))
	}
	for k, where := range keys {
		if !strings.Contains(string(doc), "`"+k+"`") {
			t.Errorf("docs/CONFIG.md does not name the key `%s` (%s)", k, where)
		}
	}
}

// transportKeys hands each key of a built-in TransportBlock literal (Name
// and Aliases) to add; the NATS listener's (topLevel) has no key.
func transportKeys(lit *ast.CompositeLit, add func(ast.Expr)) {
	var keys []ast.Expr
	for _, el := range lit.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		switch kv.Key.(*ast.Ident).Name {
		case "topLevel":
			return
		case "Name":
			keys = append(keys, kv.Value)
		case "Aliases":
			if cl, ok := kv.Value.(*ast.CompositeLit); ok {
				keys = append(keys, cl.Elts...)
			}
		}
	}
	for _, k := range keys {
		add(k)
	}
}

// decoderKeys returns every key the decoder knows, with where it is
// defined: keys of map[string]field literals, alias names, the built-in
// transport blocks' names and aliases, and the ignored lists
// (block{ignored: ...} and ignoredTop).
func decoderKeys(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	keys := map[string]string{}
	add := func(e ast.Expr, where string) {
		if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
			if s, err := strconv.Unquote(bl.Value); err == nil {
				keys[s] = where
			}
		}
	}
	strs := func(e ast.Expr, where string) {
		if cl, ok := e.(*ast.CompositeLit); ok {
			for _, el := range cl.Elts {
				add(el, where)
			}
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := goparser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CompositeLit:
				if mt, ok := x.Type.(*ast.MapType); ok {
					if id, ok := mt.Value.(*ast.Ident); ok && id.Name == "field" {
						for _, el := range x.Elts {
							add(el.(*ast.KeyValueExpr).Key, fset.Position(el.Pos()).String())
						}
					}
				}
				if id, ok := x.Type.(*ast.Ident); ok && id.Name == "TransportBlock" {
					transportKeys(x, func(e ast.Expr) { add(e, "transport block at "+fset.Position(e.Pos()).String()) })
				}
				if id, ok := x.Type.(*ast.Ident); ok && id.Name == "block" {
					for _, el := range x.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && kv.Key.(*ast.Ident).Name == "ignored" {
							strs(kv.Value, "ignored at "+fset.Position(kv.Pos()).String())
						}
					}
				}
			case *ast.CallExpr:
				if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "alias" {
					for _, a := range x.Args[2:] {
						add(a, "alias at "+fset.Position(a.Pos()).String())
					}
				}
			case *ast.ValueSpec:
				for i, n := range x.Names {
					if n.Name == "ignoredTop" && i < len(x.Values) {
						strs(x.Values[i], "ignoredTop")
					}
				}
			}
			return true
		})
	}
	return keys
}
