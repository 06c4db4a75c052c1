// Package runenv is what the bench programs ask of the machine they run on:
// the facts a report's header prints (CPU model, load average, the busbar
// commit measured), free ports, and the life of the broker processes they
// start.
package runenv

import (
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// CPUModel is the first "model name" of /proc/cpuinfo, or "unknown".
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown"
}

// LoadAvg is the 1, 5 and 15 minute load averages, or "unknown".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// GitCommit names the commit busbar was built from, run from bench/: the
// build uses the working tree (replace ../), so uncommitted changes
// outside bench/ (Go files, go.mod, go.sum) are flagged.
func GitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(out))
	if exec.Command("git", "-C", "..", "diff", "--quiet", "HEAD", "--", "*.go", "go.mod", "go.sum", ":(exclude)bench").Run() != nil {
		c += " + uncommitted Go changes outside bench/"
	}
	return c
}

// WaitForStop blocks until SIGINT or SIGTERM arrives or, with stdin,
// standard input closes (the bench program that started this process
// ended).
func WaitForStop(stdin bool) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	done := make(chan struct{})
	if stdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(done)
		}()
	}
	select {
	case <-done:
	case <-sig:
	}
}

// FreePort asks the kernel for a free loopback port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop asks a started process to exit (SIGTERM, so that a broker writes
// its CPU profile) and kills it after grace; it returns once the process
// is waited for.
func Stop(cmd *exec.Cmd, grace time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
