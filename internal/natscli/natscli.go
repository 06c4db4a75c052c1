// Package natscli runs the NATS command-line tool (natscli's `nats`) in
// tests, as operators point it at busbar: it is built once per machine
// from its Go module at the version below (the Go module proxy is
// enough), into the temp dir. A failed build fails the test saying what
// it needs; it never skips.
package natscli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Version is the natscli release the tests run (its go.mod pins
// nats-server 2.15.2, the version internal/natsserver builds).
const Version = "v0.5.1"

var (
	buildMu  sync.Mutex
	buildErr error
)

// Binary returns the path of the nats tool, building it on first use;
// a build that fails fails the test saying why.
func Binary(t testing.TB) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	bin, err := Build()
	if err != nil {
		buildErr = err
		t.Fatal(err)
	}
	return bin
}

// Build returns the path of the nats tool, building it (once per
// machine) into the temp dir. scripts/test calls it ahead of the tests
// (go run ./internal/natscli/build).
func Build() (string, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("busbar-natscli-%d", os.Getuid()), Version)
	bin := filepath.Join(dir, "nats")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	err := os.MkdirAll(filepath.Dir(dir), 0o755)
	tmp := ""
	if err == nil {
		tmp, err = os.MkdirTemp(filepath.Dir(dir), "build-")
	}
	if err != nil {
		return "", fmt.Errorf("natscli: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", "github.com/nats-io/natscli/nats@"+Version)
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("natscli: building github.com/nats-io/natscli/nats@%s failed (needs the Go toolchain and the Go module proxy or a module cache holding it; scripts/test runs it): %v\n%s", Version, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr != nil { // not another process that got there first
			return "", fmt.Errorf("natscli: %w", err)
		}
	}
	return bin, nil
}

// Result is one run of the tool.
type Result struct {
	Out  string // stdout and stderr
	Code int    // exit code
}

// Run runs `nats args...` against url with no saved context (a fresh
// HOME), bounded by a minute.
func Run(t testing.TB, url string, args ...string) Result {
	t.Helper()
	bin := Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--server", url, "--timeout", "5s"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "NATS_CONTEXT=", "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := Result{Out: out.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("natscli: run %v: %v", args, err)
	}
	return r
}
