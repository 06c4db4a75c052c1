// Package natsserver starts real, unmodified nats-server processes for
// interoperability tests: Debian's 2.9.10 (/usr/sbin/nats-server, package
// nats-server) and 2.15.2 built from the Go module the bench/ module
// already requires. Hubs listen on free 127.0.0.1 ports, with a leafnode
// port, and optionally form a cluster with routes. A missing binary fails
// the test saying what to install; it never skips.
package natsserver

import (
	"encoding/json"
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
	"testing"
	"time"

	"github.com/busbar/busbar/internal/testpeer"
)

// Versions are the nats-server versions the interop tests run against.
var Versions = []string{"2.15.2", "2.9.10"}

var (
	buildMu  sync.Mutex
	buildErr = map[string]error{}
)

// Binary returns the path of nats-server version v ("2.15.2" or
// "2.9.10").
func Binary(t testing.TB, v string) string {
	t.Helper()
	switch v {
	case "2.9.10":
		p := testpeer.Need(t, "nats-server", "nats-server")
		out, err := exec.Command(p, "--version").Output()
		if err != nil || !strings.Contains(string(out), "2.9.10") {
			t.Logf("natsserver: %s reports %q, not 2.9.10 (Debian's package)", p, strings.TrimSpace(string(out)))
		}
		return p
	case "2.15.2":
		return build(t, v)
	}
	t.Fatalf("natsserver: unknown version %q", v)
	return ""
}

// build compiles github.com/nats-io/nats-server/v2 (the version pinned in
// bench/go.mod) once per machine into the temp dir.
func build(t testing.TB, v string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("busbar-natsserver-%d", os.Getuid()))
	bin := filepath.Join(dir, "nats-server-v"+v)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := buildErr[v]; err != nil {
		t.Fatal(err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("natsserver: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("natsserver: %v", err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/nats-io/nats-server/v2")
	cmd.Dir = filepath.Join(root, "bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		buildErr[v] = fmt.Errorf("natsserver: building nats-server v%s from bench/go.mod failed (needs the Go toolchain and the module cache or network): %v\n%s", v, err, out)
		t.Fatal(buildErr[v])
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatalf("natsserver: %v", err)
	}
	return bin
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/busbar/busbar\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no busbar go.mod above the working directory")
		}
		dir = parent
	}
}

// Config describes one hub.
type Config struct {
	Name        string // server_name; default "hub-<port>"
	ClusterName string // with ClusterPort: the cluster's name
	ClusterPort int    // 0: no cluster block
	Routes      []int  // cluster ports of the other nodes
	// Top is raw config text added at the top level (accounts,
	// authorization, ...); Leaf is added inside leafnodes {}.
	Top, Leaf string
}

// Hub is a running nats-server.
type Hub struct {
	Name                       string
	ClientPort, LeafPort, HTTP int
	ClientURL, LeafURL         string
	ClusterPort                int
	cmd                        *exec.Cmd
	done                       chan struct{}
	Log                        string // path of its log file
}

// Start runs nats-server bin with cfg until the test ends. A start that
// fails because a port it was given was taken meanwhile (another process
// bound it between FreePort and nats-server's listen) is retried with
// fresh ports.
func Start(t testing.TB, bin string, cfg Config) *Hub {
	t.Helper()
	for attempt := 1; ; attempt++ {
		h, err := start(t, bin, cfg)
		if err == nil {
			return h
		}
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") && cfg.ClusterPort == 0 {
			t.Logf("natsserver: retrying with other ports: %v", err)
			continue
		}
		t.Fatal(err)
	}
}

func start(t testing.TB, bin string, cfg Config) (*Hub, error) {
	t.Helper()
	h := &Hub{ClientPort: testpeer.FreePort(t), LeafPort: testpeer.FreePort(t), HTTP: testpeer.FreePort(t), ClusterPort: cfg.ClusterPort}
	h.Name = cfg.Name
	if h.Name == "" {
		h.Name = "hub-" + strconv.Itoa(h.ClientPort)
	}
	h.ClientURL = "nats://" + testpeer.Addr(h.ClientPort)
	h.LeafURL = "nats-leaf://" + testpeer.Addr(h.LeafPort)
	dir := t.TempDir()
	h.Log = filepath.Join(dir, "nats-server.log")
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nhost: 127.0.0.1\nport: %d\nhttp: \"127.0.0.1:%d\"\nlog_file: %q\n", h.Name, h.ClientPort, h.HTTP, h.Log)
	fmt.Fprintf(&b, "leafnodes {\n  host: 127.0.0.1\n  port: %d\n%s\n}\n", h.LeafPort, cfg.Leaf)
	if cfg.ClusterPort > 0 {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  host: 127.0.0.1\n  port: %d\n  routes: [", cfg.ClusterName, cfg.ClusterPort)
		for i, p := range cfg.Routes {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"nats-route://127.0.0.1:%d\"", p)
		}
		b.WriteString("]\n}\n")
	}
	b.WriteString(cfg.Top)
	conf := filepath.Join(dir, "hub.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	h.cmd = exec.Command(bin, "-c", conf)
	h.cmd.Stdout, h.cmd.Stderr = os.Stderr, os.Stderr
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("natsserver: start %s: %w", bin, err)
	}
	h.done = make(chan struct{})
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.Kill()
		if t.Failed() {
			if log, err := os.ReadFile(h.Log); err == nil {
				t.Logf("nats-server %s log:\n%s", h.Name, tail(log, 4000))
			}
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range []int{h.ClientPort, h.LeafPort, h.HTTP} {
		for {
			c, err := net.DialTimeout("tcp", testpeer.Addr(p), time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-h.done:
				log, _ := os.ReadFile(h.Log)
				return nil, fmt.Errorf("natsserver: %s exited at start:\n%s", bin, tail(log, 4000))
			default:
			}
			if time.Now().After(deadline) {
				h.Kill()
				return nil, fmt.Errorf("natsserver: port %d not listening after 15s", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return h, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Kill sends SIGKILL and waits for the process to end.
func (h *Hub) Kill() {
	if h.cmd.Process == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// Cluster starts n hubs routed to each other (cluster name "hubs"), each
// with a leafnode port, and waits until every route is up.
func Cluster(t testing.TB, bin string, n int, top string) []*Hub {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = testpeer.FreePort(t)
	}
	hubs := make([]*Hub, n)
	for i := range hubs {
		var routes []int
		for j, p := range ports {
			if j != i {
				routes = append(routes, p)
			}
		}
		hubs[i] = Start(t, bin, Config{Name: fmt.Sprintf("hub%d", i+1), ClusterName: "hubs", ClusterPort: ports[i], Routes: routes, Top: top})
	}
	for _, h := range hubs {
		h.WaitRoutes(t, n-1)
	}
	return hubs
}

// WaitRoutes waits until the hub has n routes (/routez).
func (h *Hub) WaitRoutes(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var z struct {
			Num int `json:"num_routes"`
		}
		if h.getJSON("/routez", &z) == nil && z.Num >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natsserver: %s has %d routes after 15s, want %d", h.Name, z.Num, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Leafz is the part of the hub's /leafz the tests read.
type Leafz struct {
	Leafs []struct {
		Name    string `json:"name"`
		Account string `json:"account"`
		Subs    int    `json:"subscriptions"`
	} `json:"leafs"`
}

// Leafz fetches the hub's /leafz.
func (h *Hub) Leafz(t testing.TB) Leafz {
	t.Helper()
	var z Leafz
	if err := h.getJSON("/leafz", &z); err != nil {
		t.Fatalf("natsserver: /leafz: %v", err)
	}
	return z
}

// WaitLeafs waits until the hub has n leaf connections.
func (h *Hub) WaitLeafs(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		z := h.Leafz(t)
		if len(z.Leafs) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natsserver: %s has %d leafs after 15s, want %d", h.Name, len(z.Leafs), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *Hub) getJSON(path string, v any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + testpeer.Addr(h.HTTP) + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
