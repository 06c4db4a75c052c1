// Command mqttpeer measures busbar's MQTT side against Mosquitto (Debian's
// package) in one run, each broker in its own process, with the same raw
// MQTT 3.1.1 load client: QoS 0 1→1 with 64-byte payloads (messages per
// second and broker CPU per message) and resident memory per idle
// connection. A first, narrow comparison; mochi-mqtt and the QoS 1,
// fan-out and latency scenarios of issue 6 are not in it yet.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type broker struct {
	name string
	cmd  *exec.Cmd
	addr string
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startBusbar(bin string) *broker {
	port := freePort()
	cmd := exec.Command(bin, "-port", strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	must(cmd.Start())
	b := &broker{name: "busbar", cmd: cmd, addr: "127.0.0.1:" + strconv.Itoa(port)}
	waitUp(b.addr)
	return b
}

func startMosquitto(dir string) *broker {
	port := freePort()
	conf := filepath.Join(dir, "mosquitto.conf")
	must(os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)), 0o644))
	cmd := exec.Command("mosquitto", "-c", conf)
	must(cmd.Start())
	b := &broker{name: "mosquitto", cmd: cmd, addr: "127.0.0.1:" + strconv.Itoa(port)}
	waitUp(b.addr)
	return b
}

func waitUp(addr string) {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	panic("broker did not start on " + addr)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// cpu is the process's user+system time.
func cpu(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return time.Duration(u+s) * 10 * time.Millisecond
}

func rss(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return 0
}

func str(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func connect(addr, id string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	must(err)
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0}, str(id)...)
	_, err = c.Write(append([]byte{0x10, byte(len(body))}, body...))
	must(err)
	br := bufio.NewReaderSize(c, 256<<10)
	ack := make([]byte, 4)
	_, err = io.ReadFull(br, ack)
	must(err)
	return c, br
}

// qos0 publishes n QoS 0 messages of 64 bytes 1→1 with a window of
// unreceived bytes, and returns messages/s and broker CPU per message.
func qos0(b *broker, n int) (float64, time.Duration) {
	sub, sbr := connect(b.addr, "sub")
	defer sub.Close()
	sb := append([]byte{0, 1}, str("bench/x")...)
	sb = append(sb, 0)
	_, err := sub.Write(append([]byte{0x82, byte(len(sb))}, sb...))
	must(err)
	suback := make([]byte, 5)
	_, err = io.ReadFull(sbr, suback)
	must(err)
	pub, _ := connect(b.addr, "pub")
	defer pub.Close()
	pb := append(str("bench/x"), make([]byte, 64)...)
	msg := append([]byte{0x30, byte(len(pb))}, pb...)
	const batch = 512
	buf := make([]byte, 0, batch*len(msg))
	for range batch {
		buf = append(buf, msg...)
	}
	received := make(chan int, 1024)
	go func() {
		chunk := make([]byte, 64<<10)
		total := 0
		for total < n*len(msg) {
			k, err := sbr.Read(chunk)
			if err != nil {
				panic(err)
			}
			total += k
			received <- total / len(msg)
		}
		close(received)
	}()
	c0, t0 := cpu(b.cmd.Process.Pid), time.Now()
	got, sent := 0, 0
	for sent < n {
		for sent-got > 50000 { // window: at most 50k messages in flight
			got = <-received
		}
		k := min(batch, n-sent)
		_, err := pub.Write(buf[:k*len(msg)])
		must(err)
		sent += k
	}
	for got = range received {
	}
	el := time.Since(t0)
	return float64(n) / el.Seconds(), (cpu(b.cmd.Process.Pid) - c0) / time.Duration(n)
}

// idle opens n idle connections and returns resident KiB per connection.
func idle(b *broker, n int) float64 {
	before := rss(b.cmd.Process.Pid)
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, _ := connect(b.addr, "idle-"+strconv.Itoa(i))
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond)
	after := rss(b.cmd.Process.Pid)
	for _, c := range conns {
		c.Close()
	}
	return float64(after-before) / float64(n)
}

func main() {
	n := flag.Int("n", 2000000, "QoS 0 messages per run")
	conns := flag.Int("conns", 2000, "idle connections")
	runs := flag.Int("runs", 3, "runs per broker (median)")
	flag.Parse()
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	dir, err := os.MkdirTemp("", "mqttpeer")
	must(err)
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "busbar-mqtt")
	build := exec.Command("go", "build", "-o", bin, "./cmd/busbar-mqtt")
	build.Stderr = os.Stderr
	must(build.Run())

	type result struct {
		rate []float64
		cpu  []time.Duration
		kib  float64
	}
	res := map[string]*result{"busbar": {}, "mosquitto": {}}
	for r := range *runs {
		order := []string{"busbar", "mosquitto"}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			var b *broker
			if name == "busbar" {
				b = startBusbar(bin)
			} else {
				b = startMosquitto(dir)
			}
			rate, c := qos0(b, *n)
			res[name].rate = append(res[name].rate, rate)
			res[name].cpu = append(res[name].cpu, c)
			if r == 0 {
				res[name].kib = idle(b, *conns)
			}
			_ = b.cmd.Process.Kill()
			_ = b.cmd.Wait()
		}
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if s[j] < s[i] {
					s[i], s[j] = s[j], s[i]
				}
			}
		}
		return s[len(s)/2]
	}
	cpuUS := func(v []time.Duration) float64 {
		f := make([]float64, len(v))
		for i, d := range v {
			f[i] = float64(d) / 1e3
		}
		return med(f)
	}
	bb, mq := res["busbar"], res["mosquitto"]
	fmt.Printf("mqttpeer %s, %d runs (median), QoS 0 1->1 64 B x %d, %d idle connections\n", time.Now().UTC().Format("2006-01-02 15:04"), *runs, *n, *conns)
	fmt.Printf("%-28s %12s %12s %7s\n", "metric", "busbar", "mosquitto", "ratio")
	fmt.Printf("%-28s %12.0f %12.0f %7.2f\n", "QoS 0 msgs/s (+)", med(bb.rate), med(mq.rate), med(bb.rate)/med(mq.rate))
	fmt.Printf("%-28s %12.2f %12.2f %7.2f\n", "broker cpu µs/msg (-)", cpuUS(bb.cpu), cpuUS(mq.cpu), cpuUS(bb.cpu)/cpuUS(mq.cpu))
	fmt.Printf("%-28s %12.2f %12.2f %7.2f\n", "rss KiB/idle conn (-)", bb.kib, mq.kib, bb.kib/mq.kib)
}
