package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
)

// tempDirs are the directories to remove, and pids the broker processes
// to kill first, if the driver is interrupted or fails.
var tempDirs = struct {
	sync.Mutex
	m    map[string]bool
	pids map[int]bool
}{m: map[string]bool{}, pids: map[int]bool{}}

// cleanUp kills the brokers (a store directory removed under a running
// broker could be recreated by it) and removes the directories. It
// leaves tempDirs locked: the caller exits.
func cleanUp() {
	tempDirs.Lock()
	for pid := range tempDirs.pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(tempDirs.pids) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	for d := range tempDirs.m {
		os.RemoveAll(d)
	}
}

func removeTempDir(d string) {
	tempDirs.Lock()
	delete(tempDirs.m, d)
	tempDirs.Unlock()
	os.RemoveAll(d)
}

// removeTempDirsOnSignal removes the temporary directories and exits on
// SIGINT, SIGTERM, SIGHUP or SIGPIPE (the children die with the driver).
func removeTempDirsOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		sig := <-ch
		cleanUp()
		fmt.Fprintln(os.Stderr, "durablebench:", sig)
		os.Exit(1)
	}()
}

// peer is one broker configuration: how to start it and what its
// durability setting is.
type peer struct {
	name string
	// durability says when the broker's storage reaches the disk.
	durability string
	// fsyncBeforeAck: the PUBACK goes only after the message is fsynced.
	fsyncBeforeAck bool
}

var allPeers = []peer{
	{"busbar", "filestore (store/filestore): the message is fdatasync'ed before the PUBACK, group commit (one fdatasync per group of writes)", true},
	{"nats", "JetStream file store, sync_interval default (2m): the PUBACK after the store writes the message to its block file (page cache); fsync in the background every 2 min", false},
	{"nats-sync", "JetStream file store, sync_interval: always (SyncAlways): the block file is fsynced after every write, before the JetStream ack that releases the PUBACK", true},
	{"mochi", "pebble hook, Mode NoSync (the hook's default): pebble WAL written, not synced; the subscriber's copy is stored after the PUBACK", false},
	{"mochi-sync", "pebble hook, Mode Sync: every Set/Delete is a synced pebble write, but the subscriber's copy is stored after the PUBACK (only the PUBACK's own in-flight entry, no payload, is synced before it)", false},
	{"mosquitto", "persistence true, autosave_interval 1800 (the default): in memory; mosquitto.db written every 30 min and at exit, never per message", false},
}

func peerByName(name string) (peer, bool) {
	for _, p := range allPeers {
		if p.name == name {
			return p, true
		}
	}
	return peer{}, false
}

// mosquittoConf is Mosquitto's configuration besides the listener and
// the persistence location: anonymous clients, persistence on with the
// default autosave interval stated, no cap on queued QoS 1 messages (the
// load client's windows bound them), error-only logging.
const mosquittoConf = "allow_anonymous true\npersistence true\nautosave_interval 1800\nautosave_on_changes false\nmax_queued_messages 0\nconnection_messages false\nlog_type error\nlog_dest stderr\n"

// broker is one broker child process on a free loopback port, with its
// own fresh store directory.
type broker struct {
	name  string
	cmd   *exec.Cmd
	addr  string
	pid   int
	store string
}

// startBroker starts a fresh broker; bin holds the built binaries, data
// is the parent of the store directories.
func startBroker(name, bin, data string) (*broker, error) {
	port, err := runenv.FreePort()
	if err != nil {
		return nil, err
	}
	// Directory and process are made and registered under the lock, so
	// that an interrupt's cleanUp sees both or neither.
	tempDirs.Lock()
	b, err := spawn(name, bin, data, port)
	if err == nil {
		tempDirs.m[b.store] = true
		tempDirs.pids[b.pid] = true
	}
	tempDirs.Unlock()
	if err != nil {
		return nil, err
	}
	for range 2000 { // nats-server's JetStream start takes a moment
		if c, err := net.Dial("tcp", b.addr); err == nil {
			c.Close()
			time.Sleep(200 * time.Millisecond) // let it settle
			return b, nil
		}
		if !b.alive() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.stop()
	return nil, fmt.Errorf("%s did not start on %s", name, b.addr)
}

// spawn makes a store directory and starts the broker on port.
func spawn(name, bin, data string, port int) (b *broker, err error) {
	store, err := os.MkdirTemp(data, "durablebench-"+name+"-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(store)
		}
	}()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ps := strconv.Itoa(port)
	var cmd *exec.Cmd
	switch name {
	case "busbar":
		cmd = exec.Command(filepath.Join(bin, "busbar-mqtt"), "-port", ps, "-store-dir", store)
	case "nats":
		cmd = exec.Command(filepath.Join(bin, "natsmqtt"), "-port", ps, "-store-dir", store)
	case "nats-sync":
		cmd = exec.Command(filepath.Join(bin, "natsmqtt"), "-port", ps, "-store-dir", store, "-sync", "always")
	case "mochi":
		cmd = exec.Command(filepath.Join(bin, "mochipebble"), "-addr", addr, "-store-dir", store)
	case "mochi-sync":
		cmd = exec.Command(filepath.Join(bin, "mochipebble"), "-addr", addr, "-store-dir", store, "-sync")
	case "mosquitto":
		// Mosquitto started as root drops to user mosquitto, which must be
		// able to write mosquitto.db here.
		if err := os.Chmod(store, 0o777); err != nil {
			return nil, err
		}
		conf := filepath.Join(store, "mosquitto.conf")
		c := fmt.Sprintf("listener %d 127.0.0.1\npersistence_location %s/\n%s", port, store, mosquittoConf)
		if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
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
	return &broker{name: name, cmd: cmd, addr: addr, pid: cmd.Process.Pid, store: store}, nil
}

// stop asks the broker to exit and kills it after 10 s; then removes its
// store.
func (b *broker) stop() {
	runenv.Stop(b.cmd, 10*time.Second)
	tempDirs.Lock()
	delete(tempDirs.pids, b.pid)
	tempDirs.Unlock()
	removeTempDir(b.store)
}

func (b *broker) stat() []string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+2:]))
}

// alive reports whether the child is still running (not exited, not a
// zombie).
func (b *broker) alive() bool {
	f := b.stat()
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// cpu is the process's user+system time (10 ms resolution).
func (b *broker) cpu() time.Duration {
	f := b.stat()
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * 10 * time.Millisecond
}

// flushCounter reads the completed flush requests of the block device
// that holds a directory (field 16 of /sys/block/<dev>/stat): one for
// every fsync/fdatasync that reaches a disk with a write-back cache. The
// count is the whole device's, every process's.
type flushCounter struct{ path string }

func newFlushCounter(dir string) (*flushCounter, string) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, err.Error()
	}
	dev := uint64(st.Dev)
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	real, err := filepath.EvalSymlinks(sys)
	if err != nil {
		return nil, fmt.Sprintf("no block device for %s (%d:%d)", dir, major, minor)
	}
	if _, err := os.Stat(filepath.Join(real, "partition")); err == nil {
		real = filepath.Dir(real)
	}
	wc, _ := os.ReadFile(filepath.Join(real, "queue", "write_cache"))
	f := &flushCounter{path: filepath.Join(real, "stat")}
	if f.read() < 0 {
		return nil, "no flush count in " + f.path
	}
	return f, fmt.Sprintf("%s (write cache: %s)", filepath.Base(real), strings.TrimSpace(string(wc)))
}

func (f *flushCounter) read() int64 {
	if f == nil {
		return -1
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return -1
	}
	fs := strings.Fields(string(b))
	if len(fs) < 16 {
		return -1
	}
	n, err := strconv.ParseInt(fs[15], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// fsType names the file system of dir from /proc/mounts (the longest
// mount point that is a prefix of it).
func fsType(dir string) string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "?"
	}
	defer f.Close()
	best, typ := "", "?"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		mp := fs[1]
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fs[2]
		}
	}
	return typ
}
