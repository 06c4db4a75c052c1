package stylecheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// maxFuncLines is the house budget for a function, from its func keyword
// to its closing brace (the doc comment is not counted).
const maxFuncLines = 80

// longFuncs are the functions allowed over the budget for now, keyed
// "path/file.go:Recv.Func" (relative to the repository root), each with
// why. Split one and delete its entry (go test -v says which entries are
// no longer needed). A parser state machine may stay long: its entry says
// so.
var longFuncs = map[string]string{
	// Not yet split.
	"hub/hub.go:Store.load":             "reads a session's stored state: not split yet",
	"examples/custom-auth/main.go:main": "an example, read top to bottom: not split yet",
	// The bench programs (a separate module): scenario drivers and report
	// tables, read top to bottom.
	"bench/cmd/durablebench/main.go:main":            "bench driver",
	"bench/cmd/durablebench/main.go:run":             "bench scenario",
	"bench/cmd/durablebench/main.go:printTable":      "bench report",
	"bench/cmd/leafbench/main.go:run":                "bench driver",
	"bench/cmd/leafbench/main.go:printTable":         "bench report",
	"bench/cmd/leafbench/scenarios.go:runThroughput": "bench scenario",
	"bench/cmd/mqttpeer/main.go:main":                "bench driver",
	"bench/cmd/mqttpeer/scenarios.go:throughput":     "bench scenario",
	"bench/cmd/mqttpeer/scenarios.go:paced":          "bench scenario",
	"bench/cmd/natsbench/main.go:run":                "bench driver",
	"bench/cmd/natsbench/main.go:printTable":         "bench report",
	"bench/cmd/natsbench/scenarios.go:runFlow":       "bench scenario",
	"bench/cmd/natsbench/scenarios.go:runLatency":    "bench scenario",
	"bench/cmd/natsbench/scenarios.go:runReqRep":     "bench scenario",
	"bench/cmd/soak/scale.go:runScale":               "bench scenario",
	"bench/cmd/soak/soak.go:runSoak":                 "bench scenario",
	"bench/cmd/storebench/main.go:run":               "bench scenario",
}

// funcLen is one function's length.
type funcLen struct {
	key   string // as in longFuncs
	lines int
}

// TestFunctionLength: no function of a non-test Go file (in this module
// and in bench/) is over maxFuncLines, except those longFuncs lists. With
// -v it lists them all, and the entries no longer needed.
func TestFunctionLength(t *testing.T) {
	long, err := longFunctions(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range long {
		seen[f.key] = true
		if why, ok := longFuncs[f.key]; ok {
			t.Logf("%s: %d lines (allowed: %s)", f.key, f.lines, why)
			continue
		}
		t.Errorf("%s is %d lines, over the %d-line budget: split it (or, for a parser state machine, list it in longFuncs with why)",
			f.key, f.lines, maxFuncLines)
	}
	for key := range longFuncs {
		if !seen[key] {
			// Logged, not failed: whoever splits it may not know of the
			// list, and an entry too many allows nothing new.
			t.Logf("%s is no longer over %d lines (or is gone): delete its entry in longFuncs", key, maxFuncLines)
		}
	}
}

// longFunctions lists the functions over maxFuncLines in the non-test Go
// files below root, longest first.
func longFunctions(root string) ([]funcLen, error) {
	var out []funcLen
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "vendor":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if n > maxFuncLines {
				out = append(out, funcLen{key: filepath.ToSlash(rel) + ":" + funcName(fd), lines: n})
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].lines > out[j].lines })
	return out, err
}

// funcName is "Recv.Name" for a method, "Name" for a function.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
			continue
		case *ast.IndexExpr: // generic receiver
			typ = x.X
			continue
		case *ast.IndexListExpr:
			typ = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fd.Name.Name
		}
		return fmt.Sprintf("%T.%s", typ, fd.Name.Name)
	}
}

// TestMain runs from the package directory; the walk needs the root.
func TestMain(m *testing.M) {
	if _, err := os.Stat(filepath.Join("..", "..", "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "stylecheck: run from internal/stylecheck:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
