// Command durablebench measures durable QoS 1 — publisher → persistent
// subscriber — for busbar with its file store against nats-server's MQTT
// (JetStream file store), mochi-mqtt with its pebble storage hook and
// Mosquitto with persistence on, in one run, each broker in its own child
// process with a fresh store directory, with one raw MQTT 3.1.1 load
// client and 128-byte payloads:
//
//	throughput  one QoS 1 publisher with a bounded window of outstanding
//	            PUBACKs, as fast as the broker acknowledges, for -duration
//	paced       the same at a paced -rate (5,000 msgs/s), one message per
//	            write: latency without queueing
//
// The subscriber has a persistent session (clean session false), made
// before the run: CONNECT, SUBSCRIBE at QoS 1, DISCONNECT, and CONNECT
// again, which must report the session present. It answers every PUBLISH
// with PUBACK. The figures: delivered msgs/s, publish→PUBACK and
// publish→delivery (end-to-end) p50/p99, broker CPU per message, flushes
// of the store's disk per second (machine-wide), lost and repeated
// messages. nats-server and mochi run with two durability settings each
// (their default and their fsync-per-write one); every broker's setting is
// printed with the results. See bench/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/busbar/busbar/bench/internal/mqttwire"
	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/busbar/busbar/bench/internal/stats"
)

const payloadSize = 128

type config struct {
	duration time.Duration // publishing time of a throughput run
	window   int64         // messages published but not yet delivered, at most
	inflight int64         // outstanding PUBACKs, at most
	batch    int           // messages per write of the throughput publisher
	rate     int           // paced messages/s
	pacedDur time.Duration // publishing time of a paced run
	timeout  time.Duration // a run fails after this long without progress
	drain    time.Duration // after publishing, time without progress after which the rest counts as lost
	warmup   float64       // fraction of paced messages left out of latency
	flushes  *flushCounter
}

// result is one run's figures, by metric key.
type result map[string]float64

const (
	mRate  = "msgs/s"
	mAck50 = "ack p50 ms"
	mAck99 = "ack p99 ms"
	mE2E50 = "e2e p50 ms"
	mE2E99 = "e2e p99 ms"
	mCPU   = "cpu µs/msg"
	mFlush = "flush/s"
	mLost  = "lost"
	mDup   = "dup"
	mUnack = "unacked"
	// only with -v
	mAck90  = "ack p90 ms"
	mAck999 = "ack p99.9 ms"
	mAckMax = "ack max ms"
)

// mNoData is the flush/s of a run without a flush count.
const mNoData = -1

var metrics = []string{mRate, mAck50, mAck99, mE2E50, mE2E99, mCPU, mFlush, mLost, mDup}

var errStall = errors.New("no progress")

// persistentSubscriber makes the subscriber's persistent session and
// returns it connected (session present), not yet reading.
func persistentSubscriber(addr string, progress chan struct{}) (*subscriber, error) {
	const id = "durablebench-sub"
	c, _, err := dial(addr, id, false)
	if err != nil {
		return nil, err
	}
	if err := subscribe(c); err != nil {
		c.Close()
		return nil, err
	}
	mqttwire.Disconnect(c)
	time.Sleep(50 * time.Millisecond)
	c, present, err := dial(addr, id, false)
	if err != nil {
		return nil, fmt.Errorf("reconnect: %w", err)
	}
	if !present {
		c.Close()
		return nil, errors.New("reconnect: CONNACK without session present")
	}
	return &subscriber{c: c, progress: progress}, nil
}

// run publishes QoS 1 messages from one publisher to the persistent
// subscriber: paced at cfg.rate for cfg.pacedDur, or (rate 0) as fast as
// the windows allow for cfg.duration, in batches.
func run(b *broker, cfg config, paced bool) (result, error) {
	progress := make(chan struct{}, 1)
	sub, err := persistentSubscriber(b.addr, progress)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	var total int64 // paced: messages to publish
	if paced {
		total = int64(float64(cfg.rate) * cfg.pacedDur.Seconds())
		sub.warmSeq = uint64(float64(total) * cfg.warmup)
	}
	sub.start()
	defer func() {
		if sub != nil {
			sub.close()
		}
	}()
	pc, _, err := dial(b.addr, "durablebench-pub", true)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	acks := &ackReader{c: pc, sent: new([65536]sentRec), warmSeq: sub.warmSeq, progress: progress}
	acks.start()
	defer func() {
		if acks != nil {
			acks.close()
		}
	}()

	batch := int64(1)
	if !paced {
		batch = min(int64(cfg.batch), max(cfg.inflight/4, 1), max(cfg.window/4, 1))
	}
	buf := make([]byte, 0, int(batch)*(8+len(topic)+payloadSize))
	timer := time.NewTimer(cfg.timeout)
	defer timer.Stop()
	interval := time.Second / time.Duration(max(cfg.rate, 1))
	var seq int64
	c0, f0, t0 := b.cpu(), cfg.flushes.read(), nowNS()
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for {
		if paced {
			if seq >= total {
				break
			}
			if d := time.Until(start.Add(time.Duration(seq) * interval)); d > 0 {
				time.Sleep(d)
			}
		} else if !time.Now().Before(deadline) {
			break
		}
		// Wait for room in both windows (paced: they fill only when the
		// broker falls behind; the late messages' latency shows it).
		for {
			k := min(batch, cfg.window-(seq-1-sub.maxSeq.Load()), cfg.inflight-(seq-acks.acked.Load()))
			if k >= batch {
				break
			}
			timer.Reset(cfg.timeout)
			select {
			case <-progress:
			case <-timer.C:
				return nil, fmt.Errorf("publisher stalled at message %d (%d acked, %d delivered) for %v: %w",
					seq, acks.acked.Load(), sub.count.Load(), cfg.timeout, errStall)
			}
		}
		ts := nowNS()
		buf = buf[:0]
		for range batch {
			id := uint16(seq%65535) + 1
			acks.sent[id].ts.Store(ts)
			acks.sent[id].seq.Store(seq)
			buf = appendPublish(buf, id, ts, uint64(seq))
			seq++
		}
		_ = pc.SetWriteDeadline(time.Now().Add(cfg.timeout))
		if _, err := pc.Write(buf); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	sent := seq
	waitDone(cfg, func() (int64, bool) {
		n, a := sub.count.Load(), acks.acked.Load()
		return n + a, n >= sent && a >= sent
	})
	c1, f1 := b.cpu(), cfg.flushes.read()
	delivered, dups, acked := sub.count.Load(), sub.dups.Load(), acks.acked.Load()
	end := max(sub.last.Load(), acks.last.Load())
	s, a := sub, acks
	sub, acks = nil, nil
	s.close()
	a.close()
	if s.err != nil {
		return nil, fmt.Errorf("subscriber: %w", s.err)
	}
	if a.err != nil {
		return nil, fmt.Errorf("publisher: %w", a.err)
	}
	if delivered == 0 {
		return nil, errors.New("nothing delivered")
	}
	secs := float64(end-t0) / 1e9
	r := result{
		mRate:   float64(delivered) / secs,
		mAck50:  a.hist.Quantile(0.50) / 1e6,
		mAck99:  a.hist.Quantile(0.99) / 1e6,
		mE2E50:  s.hist.Quantile(0.50) / 1e6,
		mE2E99:  s.hist.Quantile(0.99) / 1e6,
		mCPU:    float64(c1-c0) / 1e3 / float64(delivered),
		mFlush:  mNoData,
		mLost:   float64(sent - delivered),
		mDup:    float64(dups),
		mUnack:  float64(sent - acked),
		mAck90:  a.hist.Quantile(0.90) / 1e6,
		mAck999: a.hist.Quantile(0.999) / 1e6,
		mAckMax: a.hist.Quantile(1) / 1e6,
	}
	if f0 >= 0 && f1 >= 0 {
		r[mFlush] = float64(f1-f0) / secs
	}
	return r, nil
}

// waitDone polls until state says all is done or its total has not moved
// for cfg.drain.
func waitDone(cfg config, state func() (int64, bool)) {
	last, moved := int64(-1), time.Now()
	for {
		total, all := state()
		if all {
			return
		}
		if total != last {
			last, moved = total, time.Now()
		} else if time.Since(moved) > cfg.drain {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func main() {
	var cfg config
	names := make([]string, len(allPeers))
	for i, p := range allPeers {
		names[i] = p.name
	}
	brokersFlag := flag.String("brokers", strings.Join(names, ","), "brokers to run")
	scen := flag.String("scenarios", "throughput,paced", "scenarios to run")
	count := flag.Int("count", 3, "runs per broker of each scenario (table: median)")
	dataDir := flag.String("dir", os.TempDir(), "parent of the brokers' store directories (must be a real disk, not tmpfs)")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "publishing time of a throughput run")
	flag.Int64Var(&cfg.inflight, "inflight", 256, "outstanding PUBACKs at most")
	flag.Int64Var(&cfg.window, "window", 1000, "messages published but not yet delivered, at most")
	flag.IntVar(&cfg.batch, "batch", 64, "messages per write of the throughput publisher (at most inflight/4)")
	flag.IntVar(&cfg.rate, "rate", 5000, "paced messages/s")
	flag.DurationVar(&cfg.pacedDur, "paced-duration", 5*time.Second, "publishing time of a paced run")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "a run fails after this long without progress")
	flag.DurationVar(&cfg.drain, "drain", 2*time.Second, "after publishing, time without progress after which undelivered messages count as lost")
	verbose := flag.Bool("v", false, "print every run's figures (with ack p90, p99.9 and max) to stderr")
	flag.Parse()
	cfg.warmup = 0.1
	if cfg.window < 1 || cfg.inflight < 1 || cfg.inflight > 65535 || cfg.batch < 1 || cfg.rate < 1 || *count < 1 {
		fail(errors.New("bad flag value"))
	}
	var peers []peer
	for _, name := range strings.Split(*brokersFlag, ",") {
		p, ok := peerByName(name)
		if !ok {
			fail(fmt.Errorf("unknown broker %q", name))
		}
		peers = append(peers, p)
	}
	want := strings.Split(*scen, ",")
	for _, s := range want {
		if s != "throughput" && s != "paced" {
			fail(fmt.Errorf("unknown scenario %q", s))
		}
	}
	data, err := filepath.Abs(*dataDir)
	if err != nil {
		fail(err)
	}
	fst := fsType(data)
	if fst == "tmpfs" || fst == "ramfs" {
		fail(fmt.Errorf("%s is on %s: fsync costs nothing there; pass -dir on a real disk", data, fst))
	}
	var devNote string
	cfg.flushes, devNote = newFlushCounter(data)

	removeTempDirsOnSignal()
	tempDirs.Lock()
	bin, err := os.MkdirTemp("", "durablebench-bin")
	if err == nil {
		tempDirs.m[bin] = true
	}
	tempDirs.Unlock()
	if err != nil {
		fail(err)
	}
	defer removeTempDir(bin)
	versions := map[string]string{}
	for _, p := range peers {
		switch p.name {
		case "busbar":
			if err := build(bin, "busbar-mqtt", "./cmd/busbar-mqtt"); err != nil {
				fail(err)
			}
			versions[p.name] = "commit " + runenv.GitCommit()
		case "nats", "nats-sync":
			if err := build(bin, "natsmqtt", "./cmd/durablebench/natsmqtt"); err != nil {
				fail(err)
			}
			out, _ := exec.Command(filepath.Join(bin, "natsmqtt"), "-version").Output()
			versions[p.name] = strings.TrimSpace(string(out))
		case "mochi", "mochi-sync":
			if err := build(bin, "mochipebble", "./cmd/durablebench/mochipebble"); err != nil {
				fail(err)
			}
			out, _ := exec.Command(filepath.Join(bin, "mochipebble"), "-version").Output()
			versions[p.name] = strings.TrimSpace(string(out))
		case "mosquitto":
			out, _ := exec.Command("mosquitto", "-h").Output()
			versions[p.name] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
			if versions[p.name] == "" {
				fail(errors.New("mosquitto not found: apt-get install mosquitto"))
			}
		}
	}

	t0 := time.Now()
	fmt.Printf("durablebench %s UTC  %d CPUs  %s  %d runs per broker (median)\n", t0.UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), runtime.Version(), *count)
	fmt.Printf("  stores under %s (%s, device %s)\n", data, fst, devNote)
	for _, p := range peers {
		fmt.Printf("  %-11s %s\n", p.name, versions[p.name])
		fmt.Printf("  %-11s   durability: %s\n", "", p.durability)
	}
	fmt.Printf("  load average at start: %s\n", runenv.LoadAvg())

	type scenario struct {
		key, title string
		paced      bool
	}
	var todo []scenario
	if contains(want, "throughput") {
		todo = append(todo, scenario{"throughput", fmt.Sprintf("throughput: QoS 1, 1 publisher -> 1 persistent subscriber, %d B, %v per run, %d PUBACKs outstanding, window %d msgs",
			payloadSize, cfg.duration, cfg.inflight, cfg.window), false})
	}
	if contains(want, "paced") {
		todo = append(todo, scenario{"paced", fmt.Sprintf("paced: QoS 1, 1 publisher -> 1 persistent subscriber, %d B at %d msgs/s for %v (first %.0f%% left out of latency)",
			payloadSize, cfg.rate, cfg.pacedDur, cfg.warmup*100), true})
	}
	for _, s := range todo {
		runs := map[string][]result{}
		errs := map[string][]string{}
		for r := range *count {
			for i := range peers {
				p := peers[(i+r)%len(peers)] // rotate who goes first
				b, err := startBroker(p.name, bin, data)
				if err != nil {
					errs[p.name] = append(errs[p.name], err.Error())
					continue
				}
				res, err := run(b, cfg, s.paced)
				if err == nil && !b.alive() {
					err = errors.New("broker exited")
				}
				b.stop()
				if err != nil {
					errs[p.name] = append(errs[p.name], fmt.Sprintf("run %d: %v", r+1, err))
					continue
				}
				runs[p.name] = append(runs[p.name], res)
				if *verbose {
					var line strings.Builder
					for _, m := range append(metrics, mUnack, mAck90, mAck999, mAckMax) {
						fmt.Fprintf(&line, " %s=%s", strings.ReplaceAll(m, " ", "_"), num(res[m]))
					}
					fmt.Fprintf(os.Stderr, "%s run %d %s:%s\n", s.key, r+1, p.name, line.String())
				}
			}
		}
		printTable(s.title, s.paced, peers, runs, errs)
	}
	fmt.Printf("\nload average at end: %s (other processes on the machine disturb the figures; flush/s counts the whole device)\n", runenv.LoadAvg())
	fmt.Printf("runtime %v. busbar/best = busbar / the best peer (highest msgs/s, lowest latency and cpu);\n", time.Since(t0).Round(time.Second))
	fmt.Println("busbar/best fsync = the same against the peers that fsync every message before its PUBACK.")
	fmt.Println("targets: throughput msgs/s >= 2x the best peer's durable throughput; paced p99 < 10 ms at 5,000 msgs/s.")
}

func printTable(title string, paced bool, peers []peer, runs map[string][]result, errs map[string][]string) {
	fmt.Printf("\n%s\n", title)
	fmt.Printf("%-17s", "broker")
	for _, m := range metrics {
		fmt.Printf(" %10s", m)
	}
	fmt.Println()
	med := map[string]map[string]float64{}
	for _, p := range peers {
		if len(runs[p.name]) == 0 {
			fmt.Printf("%-17s %s\n", p.name, "no result")
			continue
		}
		med[p.name] = map[string]float64{}
		fmt.Printf("%-17s", p.name)
		for _, m := range append(metrics, mUnack) {
			var v []float64
			for _, r := range runs[p.name] {
				v = append(v, r[m])
			}
			med[p.name][m] = stats.Median(v)
			if m == mUnack {
				continue
			}
			if m == mFlush && med[p.name][m] < 0 {
				fmt.Printf(" %10s", "n/a")
				continue
			}
			fmt.Printf(" %10s", num(med[p.name][m]))
		}
		if n := len(runs[p.name]); len(errs[p.name]) > 0 {
			fmt.Printf("  (%d of %d runs)", n, n+len(errs[p.name]))
		}
		if u := med[p.name][mUnack]; u > 0 {
			fmt.Printf("  (%s unacked)", num(u))
		}
		fmt.Println()
	}
	bb, ok := med["busbar"]
	if ok {
		for _, line := range []struct {
			label string
			fsync bool
		}{{"busbar/best", false}, {"busbar/best fsync", true}} {
			cells, any := "", false
			for _, m := range metrics {
				best, have := 0.0, false
				for _, p := range peers {
					if p.name == "busbar" || med[p.name] == nil || (line.fsync && !p.fsyncBeforeAck) {
						continue
					}
					v := med[p.name][m]
					if !have || (m == mRate && v > best) || (m != mRate && v < best) {
						best, have = v, true
					}
				}
				cell := ""
				if have && best > 0 && (m == mRate || m == mAck50 || m == mAck99 || m == mE2E50 || m == mE2E99 || m == mCPU) {
					cell = fmt.Sprintf("%.3g", bb[m]/best)
					any = true
				}
				cells += fmt.Sprintf(" %10s", cell)
			}
			if any {
				fmt.Printf("%-17s%s\n", line.label, cells)
			}
		}
		target := fmt.Sprintf("%-17s", "target")
		for _, m := range metrics {
			cell := ""
			switch {
			case !paced && m == mRate:
				best := 0.0
				for _, p := range peers {
					if p.name != "busbar" && med[p.name] != nil {
						best = max(best, med[p.name][m])
					}
				}
				if best > 0 {
					cell = ">=2x " + okMiss(bb[m] >= 2*best)
				}
			case paced && (m == mAck99 || m == mE2E99):
				cell = "<10 " + okMiss(bb[m] < 10)
			case m == mLost || m == mDup:
				cell = "0 " + okMiss(bb[m] == 0)
			}
			target += fmt.Sprintf(" %10s", cell)
		}
		fmt.Println(target)
	}
	for _, p := range peers {
		for _, e := range errs[p.name] {
			fmt.Printf("  error %s: %s\n", p.name, e)
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
	case v >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
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

// build builds pkg into dir (under the lock, so that an interrupt's
// cleanUp does not remove dir while go build writes into it).
func build(dir, name, pkg string) error {
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		return nil
	}
	tempDirs.Lock()
	defer tempDirs.Unlock()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s (run from bench/): %w", pkg, err)
	}
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "durablebench:", err)
	cleanUp()
	os.Exit(1)
}
