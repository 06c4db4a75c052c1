package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
)

// broker is one broker child process on a free loopback port.
type broker struct {
	name string
	cmd  *exec.Cmd
	addr string
	pid  int
}

var allBrokers = []string{"busbar", "mosquitto", "mochi"}

// busbarArgs are extra arguments for busbar-mqtt (-busbar-args).
var busbarArgs []string

// mosquittoConf is the whole Mosquitto configuration (besides the
// listener line): anonymous clients, no persistence, no limit on queued
// QoS 1 messages (QoS 1 is bounded by the load client's windows), and
// error-only logging so that connection logging does not cost CPU.
const mosquittoConf = "allow_anonymous true\npersistence false\nmax_queued_messages 0\nconnection_messages false\nlog_type error\nlog_dest stderr\n"

// startBroker starts a fresh broker; dir holds the built binaries.
func startBroker(name, dir string) (*broker, error) {
	port, err := runenv.FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var cmd *exec.Cmd
	switch name {
	case "busbar":
		args := append([]string{"-port", strconv.Itoa(port)}, busbarArgs...)
		cmd = exec.Command(filepath.Join(dir, "busbar-mqtt"), args...)
	case "mochi":
		cmd = exec.Command(filepath.Join(dir, "mochi"), "-addr", addr)
	case "mosquitto":
		conf := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\n%s", port, mosquittoConf)), 0o644); err != nil {
			return nil, err
		}
		cmd = exec.Command("mosquitto", "-c", conf)
	default:
		return nil, fmt.Errorf("unknown broker %q", name)
	}
	cmd.Stderr = os.Stderr
	// The child dies with the driver, whatever way the driver ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	b := &broker{name: name, cmd: cmd, addr: addr, pid: cmd.Process.Pid}
	for range 500 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			time.Sleep(100 * time.Millisecond) // let it settle
			return b, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.stop()
	return nil, fmt.Errorf("%s did not start on %s", name, addr)
}

// stop asks the broker to exit (SIGTERM, so that a CPU profile is
// written) and kills it after 3 s.
func (b *broker) stop() {
	runenv.Stop(b.cmd, 3*time.Second)
}

// alive reports whether the child is still running (not exited, not a
// zombie).
func (b *broker) alive() bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// cpu is the process's user+system time (10 ms resolution).
func (b *broker) cpu() time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * 10 * time.Millisecond
}

// rss is VmRSS in KiB.
func (b *broker) rss() int {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}
