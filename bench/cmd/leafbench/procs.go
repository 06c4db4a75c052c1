package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat.
const clockTicks = 100

// lab owns the temporary directory, the built binaries and every child
// process the run started; killAll ends exactly those.
type lab struct {
	dir       string
	natsBin   string // nats-server 2.15.2 (bench/go.mod)
	busbarBin string // cmd/busbar
	extraArgs []string

	mu    sync.Mutex
	procs []*proc
	seq   int
}

// proc is one running child: a nats-server or a busbar.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string // combined stdout and stderr
}

// build compiles nats-server (the version pinned in go.mod) and
// cmd/busbar into l.dir with one go build, unless prebuilt binaries
// were given.
func (l *lab) build() error {
	var pkgs []string
	if l.natsBin == "" {
		pkgs = append(pkgs, "github.com/nats-io/nats-server/v2")
	}
	if l.busbarBin == "" {
		pkgs = append(pkgs, "github.com/busbar/busbar/cmd/busbar")
	}
	if len(pkgs) == 0 {
		return nil
	}
	mod, err := moduleDir()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", append([]string{"build", "-o", l.dir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = mod
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(pkgs, " "), err)
	}
	if l.natsBin == "" {
		l.natsBin = filepath.Join(l.dir, "nats-server")
	}
	if l.busbarBin == "" {
		l.busbarBin = filepath.Join(l.dir, "busbar")
	}
	return nil
}

// moduleDir is the directory of the bench module, found upwards from the
// working directory.
func moduleDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/busbar/busbar/bench\n")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("cannot find the bench module (github.com/busbar/busbar/bench): run from busbar/bench, or pass -nats-bin and -busbar-bin")
		}
	}
}

// start runs bin -c <conf> with conf written from text, logging to a
// file in l.dir.
func (l *lab) start(name, bin, text string, extra ...string) (*proc, error) {
	l.mu.Lock()
	l.seq++
	base := filepath.Join(l.dir, fmt.Sprintf("%02d-%s", l.seq, name))
	l.mu.Unlock()
	conf := base + ".conf"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(base + ".log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"-c", conf}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: base + ".log"}
	go func() { _ = cmd.Wait(); close(p.done) }()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// killAll SIGKILLs every child still running and waits for it.
func (l *lab) killAll() {
	l.mu.Lock()
	ps := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
}

// kill sends SIGKILL (if the child still runs) and waits for its end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the child to end (SIGTERM), then kills it after 3 s.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.kill()
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// failed wraps err with the tail of the child's log.
func (p *proc) failed(err error) error {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Errorf("%s: %w\n--- %s log tail ---\n%s", p.name, err, p.name, b)
}

// cpuTime is the child's user+system CPU time (utime+stime of
// /proc/<pid>/stat, 10 ms resolution).
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// waitPort waits until 127.0.0.1:port accepts connections.
func (p *proc) waitPort(port int) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr(port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if !p.alive() {
			return p.failed(fmt.Errorf("exited before listening on %d", port))
		}
		if time.Now().After(deadline) {
			return p.failed(fmt.Errorf("port %d not listening after 15s", port))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func freePorts(n int) ([]int, error) {
	ps := make([]int, n)
	seen := map[int]bool{}
	for i := range ps {
		for {
			p, err := runenv.FreePort()
			if err != nil {
				return nil, err
			}
			if !seen[p] {
				seen[p], ps[i] = true, p
				break
			}
		}
	}
	return ps, nil
}

// hub is a nats-server with a leafnode port (and optionally routes).
type hub struct {
	*proc
	client, leaf, http, cluster int
}

func (h *hub) leafURL() string { return "nats-leaf://" + addr(h.leaf) }

// startHubs starts n nats-server hubs; with n > 1 they form the cluster
// "hubs" (full mesh of routes) and startHubs waits for every route.
func (l *lab) startHubs(n int) ([]*hub, error) {
	ports, err := freePorts(4 * n)
	if err != nil {
		return nil, err
	}
	hubs := make([]*hub, n)
	for i := range hubs {
		h := &hub{client: ports[4*i], leaf: ports[4*i+1], http: ports[4*i+2], cluster: ports[4*i+3]}
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: hub%d\nhost: 127.0.0.1\nport: %d\nhttp: \"127.0.0.1:%d\"\n", i+1, h.client, h.http)
		fmt.Fprintf(&b, "leafnodes {\n  host: 127.0.0.1\n  port: %d\n}\n", h.leaf)
		if n > 1 {
			var routes []string
			for j := 0; j < n; j++ {
				if j != i {
					routes = append(routes, strconv.Quote("nats-route://"+addr(ports[4*j+3])))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: hubs\n  host: 127.0.0.1\n  port: %d\n  routes: [ %s ]\n}\n", h.cluster, strings.Join(routes, ", "))
		}
		h.proc, err = l.start(fmt.Sprintf("hub%d", i+1), l.natsBin, b.String())
		if err != nil {
			return nil, err
		}
		hubs[i] = h
	}
	for _, h := range hubs {
		for _, p := range []int{h.client, h.leaf, h.http} {
			if err := h.waitPort(p); err != nil {
				return nil, err
			}
		}
	}
	if n > 1 {
		for _, h := range hubs {
			if err := h.waitJSON("/routez", func(m map[string]any) bool {
				r, _ := m["num_routes"].(float64)
				return int(r) >= n-1
			}); err != nil {
				return nil, err
			}
		}
	}
	return hubs, nil
}

// waitJSON polls the hub's monitoring path until ok accepts the document.
func (h *hub) waitJSON(path string, ok func(map[string]any) bool) error {
	c := http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var m map[string]any
		resp, err := c.Get("http://" + addr(h.http) + path)
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&m)
			resp.Body.Close()
		}
		if err == nil && ok(m) {
			return nil
		}
		if time.Now().After(deadline) {
			return h.failed(fmt.Errorf("%s: condition not met after 15s (last: %v)", path, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLeaf waits until the hub lists a leaf connection named name.
func (h *hub) waitLeaf(name string) error {
	return h.waitJSON("/leafz", func(m map[string]any) bool {
		ls, _ := m["leafs"].([]any)
		for _, x := range ls {
			if e, _ := x.(map[string]any); e != nil && e["name"] == name {
				return true
			}
		}
		return false
	})
}

// leafKind is the software the two leaves run.
type leafKind string

const (
	kindNATS   leafKind = "nats-server"
	kindBusbar leafKind = "busbar"
)

// leafNode is a running leaf: a nats-server or a busbar with a NATS
// client port and one remote.
type leafNode struct {
	*proc
	name   string
	client int
}

func (n *leafNode) url() string { return "nats://" + addr(n.client) }

// startLeaf starts a leaf of kind named name whose only remote lists
// urls in this order (no_randomize), and waits until hub (the one it
// should attach to) lists it.
func (l *lab) startLeaf(kind leafKind, name string, urls []string, attach *hub) (*leafNode, error) {
	port, err := runenv.FreePort()
	if err != nil {
		return nil, err
	}
	q := make([]string, len(urls))
	for i, u := range urls {
		q[i] = strconv.Quote(u)
	}
	text := fmt.Sprintf("server_name: %q\nhost: 127.0.0.1\nport: %d\nleafnodes {\n  remotes: [ { urls: [ %s ], no_randomize: true } ]\n}\n",
		name, port, strings.Join(q, ", "))
	bin, extra := l.natsBin, []string(nil)
	if kind == kindBusbar {
		bin, extra = l.busbarBin, l.extraArgs
	}
	p, err := l.start(name, bin, text, extra...)
	if err != nil {
		return nil, err
	}
	n := &leafNode{proc: p, name: name, client: port}
	if err := p.waitPort(port); err != nil {
		return nil, err
	}
	if err := attach.waitLeaf(name); err != nil {
		return nil, fmt.Errorf("leaf %s never attached: %w", name, err)
	}
	return n, nil
}

func execOutput(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).Output()
	return string(out), err
}
