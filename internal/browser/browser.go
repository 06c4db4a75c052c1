// Package browser runs test pages in a real browser: Debian's chromium,
// headless, driven by playwright-core (js/run.mjs under node). A test serves
// a page, typically on an httptest server on 127.0.0.1, whose module scripts
// import MQTT.js (/mqtt.esm.js) and nats.ws (/nats.js) from Modules, talk
// to busbar over WebSocket, then set window.__result and window.__done =
// true; Run returns that result and the page's console.
//
// A missing chromium, node or npm package fails the test naming what to
// install (scripts/test installs all three); it never skips.
package browser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Chromium is the browser run.mjs launches (Debian package chromium).
const Chromium = "/usr/bin/chromium"

// ErrTimeout is wrapped by RunE's error when the page did not set
// window.__done in time.
var ErrTimeout = errors.New("browser: page did not set window.__done in time")

// launchSlack is how much longer than the page timeout Run lets node run:
// starting chromium is not part of the page timeout.
const launchSlack = 90 * time.Second

// Result is what a page left behind.
type Result struct {
	// Value is JSON.stringify(window.__result): "null" when the page set
	// none, nil when run.mjs printed no result at all.
	Value json.RawMessage
	// Console holds the page's console messages and uncaught errors in
	// order, one entry each (a newline inside one is written as \n).
	Console []string
}

// jsDir is internal/browser/js, found from this source file so that tests
// in any package can use it.
func jsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return "", fmt.Errorf("browser: cannot locate internal/browser/js from the source path %q (built with -trimpath?)", file)
	}
	return filepath.Join(filepath.Dir(file), "js"), nil
}

// modules maps the paths Modules serves as single files to their place
// under node_modules; packages are whole package directories served under
// "/NAME/" for files the bundles might import relatively.
var (
	modules = map[string]string{
		"/mqtt.esm.js": "mqtt/dist/mqtt.esm.js",
		"/nats.js":     "nats.ws/esm/nats.js",
	}
	packages = []string{"mqtt", "nats.ws"}
)

// check returns the js directory, or an error saying what to install when
// node, chromium or the npm packages are missing.
func check() (string, error) {
	dir, err := jsDir()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(Chromium); err != nil {
		return "", fmt.Errorf("browser: %s not found: run `apt-get install chromium` (scripts/test does this)", Chromium)
	}
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("browser: node not found: run `apt-get install nodejs npm` (scripts/test does this)")
	}
	if err := checkPackages(dir); err != nil {
		return "", err
	}
	return dir, nil
}

func checkPackages(dir string) error {
	need := []string{"playwright-core/package.json"}
	for _, rel := range modules {
		need = append(need, rel)
	}
	for _, rel := range need {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", rel)); err != nil {
			return fmt.Errorf("browser: npm packages missing (no %s): run `npm ci --prefix internal/browser/js` (scripts/test does this)", rel)
		}
	}
	return nil
}

// Modules serves MQTT.js at /mqtt.esm.js and nats.ws at /nats.js, and the
// package directories under /mqtt/ and /nats.ws/, from
// internal/browser/js/node_modules. JavaScript goes out as text/javascript,
// as module scripts require. Other paths are 404.
func Modules(t testing.TB) http.Handler {
	t.Helper()
	dir, err := jsDir()
	if err == nil {
		err = checkPackages(dir)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	nm := filepath.Join(dir, "node_modules")
	mux := http.NewServeMux()
	for path, rel := range modules {
		file := filepath.Join(nm, rel)
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			http.ServeFile(w, r, file)
		})
	}
	for _, pkg := range packages {
		prefix := "/" + pkg + "/"
		fs := http.StripPrefix(prefix, http.FileServer(http.Dir(filepath.Join(nm, pkg))))
		mux.Handle(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ext := filepath.Ext(r.URL.Path); ext == ".js" || ext == ".mjs" {
				w.Header().Set("Content-Type", "text/javascript")
			}
			fs.ServeHTTP(w, r)
		}))
	}
	return mux
}

// Page serves html at "/" and Modules beside it on an httptest server on
// 127.0.0.1, closed when the test ends, and returns the page's URL.
func Page(t testing.TB, html string) string {
	t.Helper()
	mods := Modules(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(html))
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		default:
			mods.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// Run opens pageURL in headless chromium, waits up to timeout for the page
// to set window.__done = true, and returns window.__result and the console.
// Any failure, a timeout included, fails the test with the page's console.
func Run(t testing.TB, pageURL string, timeout time.Duration) Result {
	t.Helper()
	res, err := RunE(pageURL, timeout)
	if err != nil {
		t.Fatalf("%v\npage console:\n\t%s", err, strings.Join(res.Console, "\n\t"))
	}
	return res
}

// RunE is Run returning its failure: an error wrapping ErrTimeout when the
// page did not set window.__done within timeout (Result still holds the
// console and whatever window.__result was by then); another error when
// chromium, node or the npm packages are missing (saying what to install)
// or the browser could not be started or the page not loaded.
func RunE(pageURL string, timeout time.Duration) (Result, error) {
	dir, err := check()
	if err != nil {
		return Result{}, err
	}
	ms := max(timeout.Milliseconds(), 1)
	ctx, cancel := context.WithTimeout(context.Background(), timeout+launchSlack)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "run.mjs"), pageURL, fmt.Sprint(ms))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	res := parse(stdout.Bytes())
	msg := strings.TrimSpace(stderr.String())
	var exit *exec.ExitError
	switch {
	case runErr == nil:
		if res.Value == nil {
			return res, fmt.Errorf("browser: run.mjs printed no RESULT line for %s", pageURL)
		}
		return res, nil
	case ctx.Err() != nil:
		return res, fmt.Errorf("browser: run.mjs still running after %v for %s; killed: %s", timeout+launchSlack, pageURL, msg)
	case errors.As(runErr, &exit) && exit.ExitCode() == 2:
		return res, fmt.Errorf("%w (%v, %s): %s", ErrTimeout, timeout, pageURL, msg)
	default:
		return res, fmt.Errorf("browser: run.mjs %s: %v: %s", pageURL, runErr, msg)
	}
}

// parse reads run.mjs's stdout: "console: " lines and one "RESULT " line.
func parse(out []byte) Result {
	var res Result
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		line := sc.Text()
		if text, ok := strings.CutPrefix(line, "console: "); ok {
			res.Console = append(res.Console, text)
		} else if v, ok := strings.CutPrefix(line, "RESULT "); ok {
			res.Value = json.RawMessage(v)
		}
	}
	return res
}
