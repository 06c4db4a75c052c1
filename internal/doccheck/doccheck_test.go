package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the repository's root directory.
func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

// docs are the pages a user of the repository reads.
func docs(t *testing.T, dir string) []string {
	t.Helper()
	pages, err := filepath.Glob(filepath.Join(dir, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(dir, "README.md"), filepath.Join(dir, "bench", "README.md")}, pages...)
}

var (
	mdLink   = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading  = regexp.MustCompile(`(?m)^#{1,6} +(.+?)\s*$`)
	backtick = regexp.MustCompile("`([^`\n]+)`")
	topDirs  = []string{"auth", "bench", "broker", "busbartest", "cmd", "config", "docs", "examples", "hub", "internal",
		"leafnode", "monitor", "mqtt", "natsproto", "scripts", "server", "store", "subject", "transport", "websocket"}
)

// slug is the anchor GitHub gives a heading.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(t *testing.T, page string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if m := heading.FindStringSubmatch(line); m != nil && !inCode {
			out[slug(m[1])] = true
		}
	}
	return out
}

// TestLinksResolveInsideTheRepository (issue 18): every relative link in
// README.md and docs/ names a file or directory of the repository, and
// its #anchor a heading there.
func TestLinksResolveInsideTheRepository(t *testing.T) {
	dir := root(t)
	for _, page := range docs(t, dir) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, page)
		for _, m := range mdLink.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Clean(filepath.Join(filepath.Dir(page), path))
				if r, err := filepath.Rel(dir, file); err != nil || strings.HasPrefix(r, "..") {
					t.Errorf("%s: link %q leaves the repository", rel, target)
					continue
				}
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %q: no such file in the repository", rel, target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(file, ".md") && !anchors(t, file)[anchor] {
				t.Errorf("%s: link %q: no heading with that anchor", rel, target)
			}
		}
	}
}

// TestNamedPathsExist: a repository path README.md or a page of docs/
// names in backticks (`docs/CONFIG.md`, `examples/hostapp`,
// `broker/log.go`) exists. (bench/README.md names MQTT topics that look
// like paths: only its links are checked.)
func TestNamedPathsExist(t *testing.T) {
	dir := root(t)
	for _, page := range docs(t, dir) {
		if strings.HasSuffix(page, filepath.Join("bench", "README.md")) {
			continue
		}
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, page)
		for _, m := range backtick.FindAllStringSubmatch(string(data), -1) {
			p := strings.TrimPrefix(strings.TrimSuffix(m[1], "/"), "./")
			first, rest, ok := strings.Cut(p, "/")
			if !ok || rest == "" || strings.ContainsAny(p, " *<>{}$|:()...,") || !contains(topDirs, first) {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				t.Errorf("%s: names `%s`, which is not in the repository", rel, m[1])
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestNoReferencesOutsideTheRepository: the pages cite no document a
// user of the repository does not have.
func TestNoReferencesOutsideTheRepository(t *testing.T) {
	dir := root(t)
	for _, page := range docs(t, dir) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, page)
		for _, bad := range []string{"../shared", "SPEC.md", "STYLE.md"} {
			if strings.Contains(string(data), bad) {
				t.Errorf("%s cites %s, which is not in the repository", rel, bad)
			}
		}
	}
}

// TestGoDirectiveIsAMinorVersion (issue 18): go.mod's go line asks for a
// minor Go version (1.N or 1.N.0), so an embedder's module is not forced
// to a patch level.
func TestGoDirectiveIsAMinorVersion(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)(\.(\d+))?\s*$`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	if m[4] != "" && m[4] != "0" {
		t.Errorf("go.mod says go %s.%s.%s: use go %s.%s (or %s.%s.0)", m[1], m[2], m[4], m[1], m[2], m[1], m[2])
	}
}
