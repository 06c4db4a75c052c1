// Command storebench measures candidate engines for busbar's durable Store
// on the broker's own workload: many connections each durably store a QoS 1
// message (put, fsynced before the PUBACK may go out) and, once the message
// is acknowledged downstream, delete it.
//
//	cd bench && go run ./cmd/storebench
//
// Engines (-engines, comma separated):
//
//	bbolt-batch       go.etcd.io/bbolt, one db.Batch per op (bbolt's own group
//	                  commit: MaxBatchDelay 10 ms, MaxBatchSize 1000), NoSync=false
//	bbolt-committer   bbolt, one committer goroutine gathers all pending ops
//	                  into one db.Update (one commit, 2 fdatasyncs) per group
//	pebble-sync       github.com/cockroachdb/pebble, one Batch per op applied
//	                  with pebble.Sync from each connection (the WAL commit
//	                  pipeline groups concurrent syncs)
//	pebble-committer  pebble, one committer goroutine gathers all pending ops
//	                  into one Batch applied with pebble.Sync per group
//	applog            an append-only log written here: a committer goroutine
//	                  gathers all pending ops, one pwrite + one fdatasync per
//	                  group, then wakes the waiters; 16 MiB segments, a segment
//	                  is unlinked when none of its puts is live
//	applog-prealloc   the same log, but segments are zero-filled once and then
//	                  recycled, so a group overwrites allocated blocks instead
//	                  of growing the file (no inode size update per fdatasync)
//
// One op = one record put (key: 16 B client id + 2 B packet id, value 200 B),
// durable before the op returns; the connection's delete of the record it put
// -lag ops earlier (the ack) rides in the same write, so deletes cost no
// extra fsync and are durable with the next put. When the time is up every
// connection durably deletes what it still has in flight, the engine settles
// (pebble: Flush + full-range Compact; applog: a checkpoint that drops the
// emptied segments; bbolt: nothing, freed pages stay in the file on the
// freelist), is closed, and the directory's allocated bytes are counted.
package main

import (
	"cmp"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
)

// Record sizes of the workload.
const (
	keyLen = 18  // 16 B client id + 2 B packet id
	valLen = 200 // topic + 128 B payload + metadata
)

// rec is one in-flight message: key and value.
type rec struct {
	key []byte
	val []byte
}

// store is one engine under test.
type store interface {
	// Write makes put (if not nil) and the delete of del (if not nil)
	// durable before it returns. It may be called from many goroutines.
	Write(put *rec, del []byte) error
	// Settle runs after every record is deleted: whatever the engine does
	// to give space back (compaction, checkpoint).
	Settle() error
	Close() error
	// Counters reports commit groups and fsync-family calls so far;
	// exact is false when fsyncs is derived rather than counted.
	Counters() (groups, fsyncs uint64, exact bool)
}

type engine struct {
	name string
	open func(dir string) (store, error)
}

var engines = []engine{
	{"bbolt-batch", openBoltBatch},
	{"bbolt-committer", openBoltCommitter},
	{"pebble-sync", openPebbleSync},
	{"pebble-committer", openPebbleCommitter},
	{"applog", func(dir string) (store, error) { return openAppLog(dir, false) }},
	{"applog-prealloc", func(dir string) (store, error) { return openAppLog(dir, true) }},
}

// result is one engine at one concurrency.
type result struct {
	engine   string
	conns    int
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
	max      time.Duration
	groups   uint64
	fsyncs   uint64
	exact    bool
	cpu      time.Duration
	diskRun  int64 // allocated bytes right after the timed run
	diskEnd  int64 // allocated bytes after all deletes, settle and close
	err      error
}

func main() {
	var (
		enginesFlag = flag.String("engines", "bbolt-batch,bbolt-committer,pebble-sync,pebble-committer,applog,applog-prealloc", "engines to run, comma separated")
		connsFlag   = flag.String("conns", "1,16,128", "concurrent writer goroutines (connections), comma separated")
		dur         = flag.Duration("d", 1500*time.Millisecond, "timed run per engine, concurrency and round")
		warmup      = flag.Duration("warmup", 500*time.Millisecond, "unmeasured warm-up with 128 connections before each timed run (0: none)")
		rounds      = flag.Int("rounds", 3, "rounds; each round runs every engine at every concurrency, interleaved, and the table shows the median of the rounds")
		lag         = flag.Int("lag", 1, "a connection's ack (delete) of the record it put this many ops earlier rides with its next put")
		dirFlag     = flag.String("dir", "", "parent of the temporary data directories (default: the system temp dir)")
		keep        = flag.Bool("keep", false, "keep the data directories")
	)
	flag.Parse()
	if *rounds < 1 {
		fatalf("-rounds must be at least 1")
	}
	if *lag < 1 || *lag > 60000 {
		fatalf("-lag must be in 1..60000")
	}
	parent := *dirFlag
	if parent == "" {
		parent = os.TempDir()
	}
	var conns []int
	for _, s := range strings.Split(*connsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("bad -conns value %q", s)
		}
		conns = append(conns, n)
	}
	var selected []engine
	for _, name := range strings.Split(*enginesFlag, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(engines, func(e engine) bool { return e.name == name })
		if i < 0 {
			fatalf("unknown engine %q", name)
		}
		selected = append(selected, engines[i])
	}

	fmt.Printf("command: %s\n", commandLine())
	fmt.Printf("go %s %s/%s, GOMAXPROCS %d, NumCPU %d, data dir %s (%s)\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), parent, fsType(parent))
	fmt.Printf("record: key %d B, value %d B; op = durable put (+ delete of the record put %d op(s) earlier in the same write); %v per run after a %v warm-up with %d connections, %d rounds\n",
		keyLen, valLen, *lag, *dur, *warmup, warmupConns, *rounds)
	fmt.Printf("load average at start: %s\n", runenv.LoadAvg())

	// Rounds interleave the engines (rotating which goes first), so a
	// burst of outside disk or CPU load lands on one run of each, not on
	// every run of one engine.
	results := map[string][]result{}
	for round := 0; round < *rounds; round++ {
		for _, c := range conns {
			for i := range selected {
				e := selected[(i+round)%len(selected)]
				r := run(e, c, *dur, *warmup, *lag, parent, *keep)
				key := e.name + "/" + strconv.Itoa(c)
				results[key] = append(results[key], r)
				if r.err != nil {
					fmt.Fprintf(os.Stderr, "round %d %s conns=%d: %v\n", round+1, e.name, c, r.err)
				} else {
					fmt.Fprintf(os.Stderr, "round %d %-16s conns=%-4d %8.0f ops/s  p99 %v\n", round+1, e.name, c, float64(r.ops)/r.elapsed.Seconds(), r.p99.Round(time.Microsecond))
				}
			}
		}
	}
	fmt.Printf("load average at end:   %s\n\n", runenv.LoadAvg())
	var rows [][]result
	for _, e := range selected {
		for _, c := range conns {
			rows = append(rows, results[e.name+"/"+strconv.Itoa(c)])
		}
	}
	printTable(rows)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "storebench: "+format+"\n", args...)
	os.Exit(2)
}

func commandLine() string {
	args := append([]string{"go run ./cmd/storebench"}, os.Args[1:]...)
	return "cd bench && " + strings.Join(args, " ")
}

// run measures one engine at one concurrency in a fresh directory.
func run(e engine, conns int, d, warmup time.Duration, lag int, parent string, keep bool) (r result) {
	r.engine, r.conns = e.name, conns
	dir, err := os.MkdirTemp(parent, "storebench-"+e.name+"-")
	if err != nil {
		r.err = err
		return r
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	s, err := e.open(dir)
	if err != nil {
		r.err = err
		return r
	}
	closed := false
	defer func() {
		if !closed {
			s.Close()
		}
	}()
	runtime.GC()

	// Warm-up, not measured: 128 other connections for -warmup, then their
	// deletes. It takes every engine past its first-use costs (pebble's
	// first WAL files are new and later ones recycled, bbolt's file grows
	// and then reuses freed pages, applog rolls a segment), which a
	// long-running broker has long paid.
	if warmup > 0 {
		ws, _ := drive(s, warmupConns, "storebench-w", warmup, lag)
		if err := drain(s, ws); err != nil {
			r.err = fmt.Errorf("warm-up: %w", err)
			return r
		}
		runtime.GC()
	}

	g0, f0, _ := s.Counters()
	ru0 := rusage()
	workers, elapsed := drive(s, conns, "storebench-c", d, lag)
	r.elapsed = elapsed
	r.cpu = rusage() - ru0
	g1, f1, exact := s.Counters()
	r.groups, r.fsyncs, r.exact = g1-g0, f1-f0, exact

	var all []int64
	for _, w := range workers {
		if w.err != nil {
			r.err = w.err
			return r
		}
		r.ops += len(w.lat)
		all = append(all, w.lat...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		r.p50 = time.Duration(all[len(all)/2])
		r.p99 = time.Duration(all[len(all)*99/100])
		r.max = time.Duration(all[len(all)-1])
	}
	r.diskRun, _ = diskUsage(dir)

	if err := drain(s, workers); err != nil {
		r.err = err
		return r
	}
	if err := s.Settle(); err != nil {
		r.err = fmt.Errorf("settle: %w", err)
		return r
	}
	closed = true
	if err := s.Close(); err != nil {
		r.err = fmt.Errorf("close: %w", err)
		return r
	}
	r.diskEnd, _ = diskUsage(dir)
	if err := verifyEmpty(e.name, dir); err != nil {
		r.err = err
	}
	return r
}

const warmupConns = 128

// worker is one connection's state and its latencies.
type worker struct {
	lat      []int64
	inflight [][]byte // keys put and not yet deleted, oldest first
	err      error
}

// drive runs conns connections against s for d: each puts a record, waits
// until it is durable, and acks (deletes, in the same write) the record it
// put lag ops earlier. It returns the workers and the time from the start
// until the last connection finished its last op.
func drive(s store, conns int, idPrefix string, d time.Duration, lag int) ([]*worker, time.Duration) {
	workers := make([]*worker, conns)
	var wg, ready sync.WaitGroup
	startGate := make(chan struct{})
	var deadline time.Time
	ready.Add(conns)
	for i := range workers {
		w := &worker{lat: make([]int64, 0, 1<<14)}
		workers[i] = w
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			// Each op gets its own key and value buffers: an engine may keep
			// referring to them until Write returns (bbolt until commit).
			ring := make([]rec, lag+1)
			for j := range ring {
				ring[j].key = make([]byte, keyLen)
				copy(ring[j].key, fmt.Sprintf("%s%04d", idPrefix, id%10000))
				ring[j].val = makeValue(id)
			}
			ready.Done()
			<-startGate
			var pid uint16
			for n := 0; ; n++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				pid++
				if pid == 0 {
					pid = 1
				}
				cur := &ring[n%len(ring)]
				binary.BigEndian.PutUint16(cur.key[16:], pid)
				binary.BigEndian.PutUint64(cur.val[2:], uint64(t0.UnixNano()))
				var del []byte
				if len(w.inflight) == lag {
					del = w.inflight[0]
					w.inflight = w.inflight[1:]
				}
				if err := s.Write(cur, del); err != nil {
					w.err = err
					return
				}
				w.lat = append(w.lat, int64(time.Since(t0)))
				w.inflight = append(w.inflight, cur.key)
			}
		}(i)
	}
	ready.Wait()
	t0 := time.Now()
	deadline = t0.Add(d)
	close(startGate)
	wg.Wait()
	return workers, time.Since(t0)
}

// drain durably deletes (acks) everything still in flight, from every
// connection concurrently.
func drain(s store, workers []*worker) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, w := range workers {
		if w.err != nil {
			return w.err
		}
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for _, k := range w.inflight {
				if err := s.Write(nil, k); err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
			}
			w.inflight = nil
		}(w)
	}
	wg.Wait()
	return first
}

// makeValue builds a 200-byte QoS 1 message record: qos, flags, 8 B
// timestamp, topic length, topic, 128 B payload, zero padding.
func makeValue(id int) []byte {
	v := make([]byte, valLen)
	v[0] = 1 // QoS
	v[1] = 0 // flags (retain, dup)
	topic := fmt.Sprintf("busbar/bench/sensors/%04d/temperature", id%10000)
	binary.BigEndian.PutUint16(v[10:], uint16(len(topic)))
	n := 12 + copy(v[12:], topic)
	for i := 0; i < 128; i++ {
		v[n+i] = byte('a' + (id+i)%26)
	}
	return v
}

// rusage is the process's user + system CPU time so far.
func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// diskUsage sums allocated (st_blocks) and apparent sizes under dir.
func diskUsage(dir string) (alloc, apparent int64) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) == nil {
			alloc += st.Blocks * 512
			apparent += st.Size
		}
		return nil
	})
	return alloc, apparent
}

func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown fs"
	}
	switch uint32(st.Type) {
	case 0xEF53:
		return "ext2/3/4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlayfs"
	}
	return fmt.Sprintf("fs magic %#x", st.Type)
}

// verifyEmpty reopens what the engine left and checks that no record
// survived the deletes (and, for applog, that its log replays).
func verifyEmpty(name, dir string) error {
	var n int
	var err error
	switch {
	case strings.HasPrefix(name, "bbolt"):
		n, err = countBolt(dir)
	case strings.HasPrefix(name, "pebble"):
		n, err = countPebble(dir)
	case strings.HasPrefix(name, "applog"):
		n, err = countAppLog(dir)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if n != 0 {
		return errors.New("verify: " + strconv.Itoa(n) + " records left after all deletes")
	}
	return nil
}

// printTable prints one row per engine and concurrency: the median of the
// rounds for every figure, and the range of the rounds' ops/s.
func printTable(rows [][]result) {
	fmt.Println("| engine | conns | durable ops/s (median) | ops/s range | p50 | p99 | max | groups/s | ops/group | fsyncs/s | CPU (user+sys) | CPU/op | disk after run | disk at end |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rs := range rows {
		var ok []result
		for _, r := range rs {
			if r.err != nil {
				fmt.Printf("| %s | %d | error: %v ||||||||||||\n", r.engine, r.conns, r.err)
				continue
			}
			ok = append(ok, r)
		}
		if len(ok) == 0 {
			continue
		}
		med := func(f func(r result) float64) float64 {
			v := make([]float64, len(ok))
			for i, r := range ok {
				v[i] = f(r)
			}
			slices.Sort(v)
			if len(v)%2 == 1 {
				return v[len(v)/2]
			}
			return (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		opsPerSec := func(r result) float64 { return float64(r.ops) / r.elapsed.Seconds() }
		lo, hi := opsPerSec(ok[0]), opsPerSec(ok[0])
		for _, r := range ok {
			lo, hi = min(lo, opsPerSec(r)), max(hi, opsPerSec(r))
		}
		groups, opg := "n/a", "n/a"
		if med(func(r result) float64 { return float64(r.groups) }) > 0 {
			groups = fmt.Sprintf("%.0f", med(func(r result) float64 { return float64(r.groups) / r.elapsed.Seconds() }))
			opg = fmt.Sprintf("%.1f", med(func(r result) float64 { return float64(r.ops) / float64(max(r.groups, 1)) }))
		}
		fs := fmt.Sprintf("%.0f", med(func(r result) float64 { return float64(r.fsyncs) / r.elapsed.Seconds() }))
		if !ok[0].exact {
			fs = "≈" + fs
		}
		cpu := med(func(r result) float64 { return r.cpu.Seconds() })
		cpuShare := med(func(r result) float64 { return 100 * r.cpu.Seconds() / r.elapsed.Seconds() })
		cpuPerOp := med(func(r result) float64 { return float64(r.cpu.Microseconds()) / float64(max(r.ops, 1)) })
		dur := func(f func(r result) time.Duration) string {
			return fmtDur(time.Duration(med(func(r result) float64 { return float64(f(r)) })))
		}
		fmt.Printf("| %s | %d | %.0f | %.0f–%.0f | %s | %s | %s | %s | %s | %s | %.2f s (%.0f%%) | %.0f µs | %s | %s |\n",
			ok[0].engine, ok[0].conns, med(opsPerSec), lo, hi,
			dur(func(r result) time.Duration { return r.p50 }),
			dur(func(r result) time.Duration { return r.p99 }),
			dur(func(r result) time.Duration { return r.max }),
			groups, opg, fs, cpu, cpuShare, cpuPerOp,
			fmtBytes(int64(med(func(r result) float64 { return float64(r.diskRun) }))),
			fmtBytes(int64(med(func(r result) float64 { return float64(r.diskEnd) }))))
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
