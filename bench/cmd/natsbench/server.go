package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// brokerKind names a server binary the driver can start.
type brokerKind struct {
	Name string   // "busbar" or "nats-server": the label in the table
	Pkg  string   // package path under the bench module
	Bin  string   // path of the built binary
	Args []string // extra command-line arguments
}

// moduleDir returns the directory of the bench module (where go.mod is),
// so the server binaries build whatever the current directory is.
func moduleDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
		if isBenchModule(dir) {
			return dir, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isBenchModule(dir) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("cannot find the bench module (go.mod of github.com/busbar/busbar/bench); run from /path/to/busbar/bench or pass -busbar-bin and -nats-bin")
}

func isBenchModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.Contains(b, []byte("module github.com/busbar/busbar/bench\n"))
}

// buildServers compiles the server commands into dir with one go build.
func buildServers(dir string, kinds []*brokerKind) error {
	var pkgs []string
	for _, k := range kinds {
		if k.Bin == "" {
			pkgs = append(pkgs, "./"+k.Pkg)
		}
	}
	if len(pkgs) == 0 {
		return nil
	}
	mod, err := moduleDir()
	if err != nil {
		return err
	}
	args := append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = mod
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(pkgs, " "), err)
	}
	for _, k := range kinds {
		if k.Bin == "" {
			k.Bin = filepath.Join(dir, filepath.Base(k.Pkg))
		}
	}
	return nil
}

// server is a running child broker.
type server struct {
	kind  *brokerKind
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string // host:port
	ws    string // host:port of the WebSocket listener ("" when not asked for)
	done  chan struct{}
}

// startServer runs kind's binary on a free loopback port and waits for
// its "LISTEN host:port" line. With ws it also asks for a WebSocket
// listener (-ws-port 0), whose "WSLISTEN host:port" line comes before
// LISTEN.
func startServer(kind *brokerKind, ws bool) (*server, error) {
	args := []string{"-host", "127.0.0.1", "-port", "0"}
	if ws {
		args = append(args, "-ws-port", "0")
	}
	cmd := exec.Command(kind.Bin, append(args, kind.Args...)...)
	lines := make(chan string, 8)
	cmd.Stdout = &startLines{ch: lines}
	cmd.Stderr = &prefixWriter{prefix: "[" + kind.Name + "] ", w: os.Stderr}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", kind.Name, err)
	}
	s := &server{kind: kind, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()

	timeout := time.After(15 * time.Second)
	for s.addr == "" {
		select {
		case line := <-lines:
			line = strings.TrimSpace(line)
			if addr, ok := strings.CutPrefix(line, "WSLISTEN "); ok && ws {
				s.ws = addr
			} else if addr, ok := strings.CutPrefix(line, "LISTEN "); ok {
				s.addr = addr
			} else {
				s.stop()
				return nil, fmt.Errorf("%s: unexpected line %q", kind.Name, line)
			}
		case <-s.done:
			return nil, fmt.Errorf("%s: exited before listening: %v", kind.Name, cmd.ProcessState)
		case <-timeout:
			s.stop()
			return nil, fmt.Errorf("%s: not listening after 15s", kind.Name)
		}
	}
	if ws && s.ws == "" {
		s.stop()
		return nil, fmt.Errorf("%s: no WSLISTEN line before LISTEN", kind.Name)
	}
	return s, nil
}

func (s *server) url() string { return "nats://" + s.addr }

// wsURL is the NATS-over-WebSocket URL (plain ws://) of a server started
// with ws.
func (s *server) wsURL() string { return "ws://" + s.ws }

func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports whether the child is still running.
func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop closes the child's stdin (its signal to shut down), then kills it
// if it has not exited within 5 s.
func (s *server) stop() {
	_ = s.stdin.Close()
	select {
	case <-s.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// cpuTime is the child's user+system CPU time so far (utime+stime of
// /proc/<pid>/stat, 10 ms resolution).
func (s *server) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid()) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", s.pid())
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", s.pid())
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc/%d/stat times", s.pid())
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// rss is the child's resident set size in bytes (VmRSS of
// /proc/<pid>/status).
func (s *server) rss() (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.pid()) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", s.pid())
}

// raiseNoFile raises RLIMIT_NOFILE so the idle-connection scenario can
// hold want sockets; children inherit the new limit.
func raiseNoFile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur >= want {
		return rl.Cur, nil
	}
	if rl.Max < want {
		// Raising the hard limit needs CAP_SYS_RESOURCE; try, then fall
		// back to the hard limit.
		try := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try); err == nil {
			return want, nil
		}
		want = rl.Max
	}
	rl.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return want, nil
}

// startLines is a child's stdout: it sends each line on ch up to and
// including the LISTEN line, and discards the rest. It never blocks: a
// line that does not fit in ch is dropped (the driver is no longer
// waiting for it).
type startLines struct {
	mu   sync.Mutex
	buf  []byte
	done bool
	ch   chan<- string
}

func (f *startLines) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return len(p), nil
	}
	f.buf = append(f.buf, p...)
	for !f.done {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			break
		}
		line := string(f.buf[:i])
		f.buf = f.buf[i+1:]
		select {
		case f.ch <- line:
		default:
		}
		f.done = strings.HasPrefix(line, "LISTEN ")
	}
	if f.done {
		f.buf = nil
	}
	return len(p), nil
}

// prefixWriter copies a child's stderr to w, each line prefixed.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}
