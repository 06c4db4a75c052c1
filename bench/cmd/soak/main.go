// Command soak runs the busbar command as a child process for a long time
// and checks two things the unit tests cannot (issue 16):
//
//	soak   a steady QoS 1 load (-rate msgs/s from -publishers raw MQTT
//	       3.1.1 clients to one persistent subscriber) through the durable
//	       file store for -duration, with -kills SIGKILLs at random
//	       moments (one in each equal slot), the broker restarted on the
//	       same store at once; clients reconnect and resend what was not
//	       acknowledged. Each -sample (a minute) it prints the broker's RSS,
//	       the store's size on disk, PUBACK p50/p99 and the rate. At the end
//	       every acknowledged message must have been delivered: 0 lost.
//	scale  (-scale) -conns MQTT connections, of which -active carry a QoS 1
//	       load of -rate msgs/s (each publishes to the next one's topic)
//	       and the rest are idle; RSS per connection and the load's
//	       latency, delivered rate and losses.
//
// Both build ../cmd/busbar into a temporary directory and run it with
// -c (a generated config) and, for soak, --store_dir. The driver raises its
// own file limit (the child inherits it) and dials from 127.0.0.2 and up
// when one source address has too few ports. See bench/README.md.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/mqtt/packet"
)

func main() {
	var o opts
	flag.BoolVar(&o.scale, "scale", false, "run the scale scenario instead of the soak")
	flag.DurationVar(&o.duration, "duration", time.Hour, "publishing time")
	flag.IntVar(&o.rate, "rate", 20000, "QoS 1 messages per second, in all")
	flag.IntVar(&o.kills, "kills", 10, "soak: SIGKILLs, one at a random moment of each equal slot")
	flag.IntVar(&o.publishers, "publishers", 4, "soak: publisher connections")
	flag.IntVar(&o.payload, "payload", 128, "payload bytes (at least 24)")
	flag.IntVar(&o.inflight, "inflight", 2000, "soak: PUBACKs outstanding per publisher, at most")
	flag.DurationVar(&o.sample, "sample", time.Minute, "sampling interval")
	flag.StringVar(&o.dir, "dir", "", "soak: parent of the store directory (default $TMPDIR; use a disk, not tmpfs)")
	flag.IntVar(&o.conns, "conns", 100000, "scale: MQTT connections in all")
	flag.IntVar(&o.active, "active", 1000, "scale: connections carrying the load")
	flag.StringVar(&o.busbar, "busbar", "", "a busbar binary to run (default: go build ../cmd/busbar)")
	flag.Parse()
	if o.payload < 24 {
		o.payload = 24
	}
	raiseFileLimit()
	var err error
	if o.scale {
		err = runScale(o)
	} else {
		err = runSoak(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type opts struct {
	scale                            bool
	duration, sample                 time.Duration
	rate, kills, publishers, payload int
	inflight, conns, active          int
	dir, busbar                      string
}

// raiseFileLimit raises RLIMIT_NOFILE for the driver and the child (it
// inherits it): to 1M when allowed (root may raise the hard limit up to
// fs.nr_open), else to the hard limit.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1 << 20, Max: max(l.Max, 1<<20)}) == nil {
		return
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// ---- the busbar child ----

type child struct {
	bin, conf, storeDir string
	port                int
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	logs                *os.File
}

func buildBusbar(o opts, tmp string) (string, error) {
	if o.busbar != "" {
		return o.busbar, nil
	}
	bin := filepath.Join(tmp, "busbar")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/busbar/busbar/cmd/busbar")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return bin, cmd.Run()
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *child) start() error {
	args := []string{"-c", c.conf}
	if c.storeDir != "" {
		args = append(args, "--store_dir", c.storeDir)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	c.mu.Lock()
	c.cmd = cmd
	c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if nc, err := net.Dial("tcp", c.addr()); err == nil {
			nc.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("busbar did not start (see its log)")
}

func (c *child) addr() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

func (c *child) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

func (c *child) kill() {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// rss is the child's VmRSS in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// ---- a raw MQTT 3.1.1 connection ----

type mconn struct {
	c   net.Conn
	wmu sync.Mutex
	w   *bufio.Writer
}

func dial(local net.IP, addr, id string, clean bool) (*mconn, bool, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, false, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, ClientID: []byte(id), CleanStart: clean})); err != nil {
		c.Close()
		return nil, false, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, false, fmt.Errorf("connack % x: %v", ack, err)
	}
	_ = c.SetDeadline(time.Time{})
	return &mconn{c: c, w: bufio.NewWriterSize(c, 32<<10)}, ack[2]&1 == 1, nil
}

func (m *mconn) send(b []byte) error {
	m.wmu.Lock()
	defer m.wmu.Unlock()
	if _, err := m.w.Write(b); err != nil {
		return err
	}
	return m.w.Flush()
}

// loop decodes packets until the connection ends.
func (m *mconn) loop(handle func(p packet.Packet)) {
	var d packet.Decoder
	br := bufio.NewReaderSize(m.c, 64<<10)
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := br.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			k, ferr := packet.Frame(buf, 1<<20)
			if ferr != nil || k == 0 {
				break
			}
			if p, derr := d.Decode(buf[:k], packet.V311); derr == nil {
				handle(p)
			}
			buf = append(buf[:0], buf[k:]...)
		}
		if err != nil {
			return
		}
	}
}

func ack(t packet.Type, id uint16) []byte {
	return packet.AppendAck(nil, packet.V311, &packet.AckPacket{Type: t, PacketID: id})
}

// bitset grows as it is set.
type bitset struct{ w []uint64 }

func (b *bitset) set(i uint64) bool {
	for uint64(len(b.w)) <= i/64 {
		b.w = append(b.w, 0)
	}
	old := b.w[i/64]&(1<<(i%64)) != 0
	b.w[i/64] |= 1 << (i % 64)
	return old
}

func (b *bitset) has(i uint64) bool {
	return i/64 < uint64(len(b.w)) && b.w[i/64]&(1<<(i%64)) != 0
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*q)]
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

// payloadOf is [publisher u32][seq u64][sent ns u64] and padding.
func payloadOf(size int, pub uint32, seq uint64) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint32(p, pub)
	binary.BigEndian.PutUint64(p[4:], seq)
	binary.BigEndian.PutUint64(p[12:], uint64(time.Now().UnixNano()))
	return p
}
