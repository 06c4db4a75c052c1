// Command mqttpeer measures busbar's MQTT side against Mosquitto (Debian's
// package) and mochi-mqtt (github.com/mochi-mqtt/server/v2, run by
// ./cmd/mochi) in one run, each broker in its own child process, with the
// same raw MQTT 3.1.1 load client and 64-byte payloads:
//
//	qos0      QoS 0 1→1, as fast as the publisher's window allows
//	qos1      QoS 1 1→1: publisher with a bounded window of outstanding
//	          PUBACKs, subscriber at QoS 1 answering PUBACK
//	fanout16  QoS 0, one publisher, 16 subscribers (deliveries counted)
//	paced     QoS 0 and QoS 1 at a paced 5,000 msgs/s: latency without queueing
//	          (paced0, paced1: only one of them, e.g. to profile it)
//	idle      resident memory per idle connection at 5,000 connections
//
// Throughput runs report delivered messages/s, p50/p99 publish→delivery
// latency (send time in the payload) and broker CPU µs per delivered
// message (= CPU seconds per million), from /proc/<pid>/stat; memory is
// VmRSS from /proc/<pid>/status. Each table ends with busbar / best peer
// and the targets. See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/busbar/busbar/bench/internal/stats"
)

// metric is one column of a scenario's table.
type metric struct {
	key    string
	higher bool    // higher is better
	target float64 // ratio target for busbar / best peer; 0: none
	abs    float64 // absolute target for busbar's own figure; 0: none
}

type scenario struct {
	key, title string
	alias      string // a second key selecting this scenario alone; "": none
	metrics    []metric
	run        func(*broker, config) (result, error)
}

func scenarios(cfg config) []scenario {
	thr := []metric{{key: mRate, higher: true, target: 1}, {key: mP50}, {key: mP99}, {key: mCPU, target: 0.5}, {key: mLost}}
	pac := []metric{{key: mP50}, {key: mP99, target: 0.5}, {key: mCPU, target: 0.5}, {key: mLost}}
	return []scenario{
		{"qos0", fmt.Sprintf("qos0: QoS 0 1->1, %d B, %v per run, window %d msgs", payloadSize, cfg.duration, cfg.window), "", thr,
			func(b *broker, c config) (result, error) { return throughput(b, c, 0, 1) }},
		{"qos1", fmt.Sprintf("qos1: QoS 1 1->1, %d B, %v per run, %d PUBACKs outstanding, window %d msgs", payloadSize, cfg.duration, cfg.inflight, cfg.window), "", thr,
			func(b *broker, c config) (result, error) { return throughput(b, c, 1, 1) }},
		{"fanout16", fmt.Sprintf("fanout16: QoS 0 1->%d, %d B, %v per run, window %d msgs (msgs/s = deliveries)", cfg.fanout, payloadSize, cfg.duration, cfg.window), "", thr,
			func(b *broker, c config) (result, error) { return throughput(b, c, 0, c.fanout) }},
		{"paced", fmt.Sprintf("paced qos0: QoS 0 1->1, %d B at %d msgs/s for %v", payloadSize, cfg.rate, cfg.pacedDur), "paced0", pac,
			func(b *broker, c config) (result, error) { return paced(b, c, 0) }},
		{"paced", fmt.Sprintf("paced qos1: QoS 1 1->1, %d B at %d msgs/s for %v", payloadSize, cfg.rate, cfg.pacedDur), "paced1", pac,
			func(b *broker, c config) (result, error) { return paced(b, c, 1) }},
		{"idle", fmt.Sprintf("idle: %d idle connections (RSS growth 1 s after the last)", cfg.conns), "",
			[]metric{{key: mKiB, abs: 4}, {key: mStart}, {key: mConnPS, higher: true}},
			idle},
	}
}

func main() {
	var cfg config
	scen := flag.String("scenarios", "qos0,qos1,fanout16,paced,idle", "scenarios to run")
	brokersFlag := flag.String("brokers", strings.Join(allBrokers, ","), "brokers to run (busbar,mosquitto,mochi)")
	count := flag.Int("count", 3, "runs per broker of each scenario (table: median)")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "publishing time of each throughput run")
	flag.Int64Var(&cfg.window, "window", 4096, "messages in flight toward the slowest subscriber")
	flag.Int64Var(&cfg.inflight, "inflight", 256, "QoS 1 publisher: outstanding PUBACKs")
	flag.IntVar(&cfg.fanout, "fanout", 16, "subscribers of fanout16")
	flag.IntVar(&cfg.rate, "rate", 5000, "paced messages/s")
	flag.DurationVar(&cfg.pacedDur, "paced-duration", 3*time.Second, "publishing time of each paced run")
	flag.IntVar(&cfg.conns, "conns", 5000, "idle connections")
	flag.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "a run fails after this long without progress")
	flag.DurationVar(&cfg.drain, "drain", time.Second, "after publishing, time without progress after which undelivered messages count as lost")
	flag.IntVar(&cfg.batch, "batch", 256, "messages per write of a throughput publisher")
	extra := flag.String("busbar-args", "", "extra arguments for busbar-mqtt, e.g. -cpuprofile /tmp/busbar.pprof (the last run's profile stays)")
	flag.Parse()
	busbarArgs = strings.Fields(*extra)
	cfg.settleIdle = time.Second
	cfg.pacedWarmup = 0.1
	if cfg.window < 1 || cfg.inflight < 1 || cfg.inflight > 65535 || cfg.batch < 1 || cfg.rate < 1 || *count < 1 {
		fmt.Fprintln(os.Stderr, "mqttpeer: bad flag value")
		os.Exit(2)
	}
	brokers := strings.Split(*brokersFlag, ",")
	for _, name := range brokers {
		if !contains(allBrokers, name) {
			fmt.Fprintf(os.Stderr, "mqttpeer: unknown broker %q\n", name)
			os.Exit(2)
		}
	}
	want := strings.Split(*scen, ",")
	var todo []scenario
	for _, s := range scenarios(cfg) {
		if contains(want, s.key) || s.alias != "" && contains(want, s.alias) {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		fmt.Fprintln(os.Stderr, "mqttpeer: no scenario selected")
		os.Exit(2)
	}

	// Children inherit the raised limit: 5,000 idle connections need it.
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	dir, err := os.MkdirTemp("", "mqttpeer")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	versions := map[string]string{}
	for _, name := range brokers {
		switch name {
		case "busbar":
			build(dir, "busbar-mqtt")
			versions[name] = "commit " + runenv.GitCommit()
		case "mochi":
			build(dir, "mochi")
			out, _ := exec.Command(filepath.Join(dir, "mochi"), "-version").Output()
			versions[name] = strings.TrimSpace(string(out))
		case "mosquitto":
			out, _ := exec.Command("mosquitto", "-h").Output()
			versions[name] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
			if versions[name] == "" {
				fail(fmt.Errorf("mosquitto not found: apt-get install mosquitto"))
			}
		}
	}

	start := time.Now()
	fmt.Printf("mqttpeer %s UTC  %d CPUs  %s  %d runs per broker (median)\n", start.UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), runtime.Version(), *count)
	for _, name := range brokers {
		fmt.Printf("  %-10s %s\n", name, versions[name])
	}
	fmt.Printf("  load average at start: %s\n", runenv.LoadAvg())
	for _, s := range todo {
		runs := map[string][]result{}
		errs := map[string][]string{}
		for r := range *count {
			for i := range brokers {
				name := brokers[(i+r)%len(brokers)] // rotate who goes first
				b, err := startBroker(name, dir)
				if err != nil {
					errs[name] = append(errs[name], err.Error())
					continue
				}
				res, err := s.run(b, cfg)
				if err == nil && !b.alive() {
					err = fmt.Errorf("broker exited")
				}
				b.stop()
				if err != nil {
					errs[name] = append(errs[name], fmt.Sprintf("run %d: %v", r+1, err))
					continue
				}
				runs[name] = append(runs[name], res)
			}
		}
		printTable(s, brokers, runs, errs)
	}
	fmt.Printf("\nload average at end: %s (other processes on the machine disturb the figures, paced p99 most)\n", runenv.LoadAvg())
	fmt.Printf("runtime %v. ratio = busbar / best peer (highest msgs/s and conns/s, lowest of the rest);\n", time.Since(start).Round(time.Second))
	fmt.Println("targets: msgs/s >= 1x, cpu <= 0.5x, paced p99 <= 0.5x, idle <= 4 KiB/conn. cpu µs/msg = CPU s per million delivered.")
}

func printTable(s scenario, brokers []string, runs map[string][]result, errs map[string][]string) {
	fmt.Printf("\n%s\n", s.title)
	fmt.Printf("%-12s", "broker")
	for _, m := range s.metrics {
		fmt.Printf(" %11s", m.key)
	}
	fmt.Println()
	med := map[string]map[string]float64{}
	for _, name := range brokers {
		if len(runs[name]) == 0 {
			fmt.Printf("%-12s %s\n", name, "no result")
			continue
		}
		med[name] = map[string]float64{}
		fmt.Printf("%-12s", name)
		for _, m := range s.metrics {
			var v []float64
			for _, r := range runs[name] {
				v = append(v, r[m.key])
			}
			med[name][m.key] = stats.Median(v)
			fmt.Printf(" %11s", num(med[name][m.key]))
		}
		if n := len(runs[name]); n < len(runs[name])+len(errs[name]) {
			fmt.Printf("  (%d of %d runs)", n, n+len(errs[name]))
		}
		fmt.Println()
	}
	bb, ok := med["busbar"]
	if ok {
		ratioLine := fmt.Sprintf("%-12s", "busbar/best")
		targetLine := fmt.Sprintf("%-12s", "target")
		anyRatio := false
		for _, m := range s.metrics {
			best, have := 0.0, false
			for _, name := range brokers {
				if name == "busbar" || med[name] == nil {
					continue
				}
				v := med[name][m.key]
				if !have || (m.higher && v > best) || (!m.higher && v < best) {
					best, have = v, true
				}
			}
			cell, tcell := "", ""
			if have && m.key != mLost && best > 0 {
				ratio := bb[m.key] / best
				cell = fmt.Sprintf("%.2f", ratio)
				anyRatio = true
				if m.target > 0 {
					if m.higher {
						tcell = fmt.Sprintf(">=%g %s", m.target, okMiss(ratio >= m.target))
					} else {
						tcell = fmt.Sprintf("<=%g %s", m.target, okMiss(ratio <= m.target))
					}
				}
			}
			if m.abs > 0 {
				tcell = fmt.Sprintf("<=%g %s", m.abs, okMiss(bb[m.key] <= m.abs))
			}
			ratioLine += fmt.Sprintf(" %11s", cell)
			targetLine += fmt.Sprintf(" %11s", tcell)
		}
		if anyRatio {
			fmt.Println(ratioLine)
		}
		if strings.TrimSpace(targetLine) != "target" {
			fmt.Println(targetLine)
		}
	}
	for _, name := range brokers {
		for _, e := range errs[name] {
			fmt.Printf("  error %s: %s\n", name, e)
		}
	}
}

func okMiss(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 100 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func build(dir, name string) {
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fail(fmt.Errorf("building %s (run from bench/): %w", name, err))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mqttpeer:", err)
	os.Exit(1)
}
