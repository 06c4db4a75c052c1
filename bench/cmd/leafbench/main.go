// Command leafbench measures busbar as a NATS leaf node against
// nats-server's own leaf nodes, in one run and the same topology: a hub
// (nats-server 2.15.2, the version bench/go.mod pins) with two leaves A
// and B, nats.go clients publishing on A and receiving on B.
//
//	cd bench && go run ./cmd/leafbench
//
// For each leaf kind (nats-server 2.15.2 processes, then busbar
// processes, both configured by the same `leafnodes { remotes }` file)
// it measures throughput A→B at two payload sizes, the request/reply
// round trip A→B, and the failover gap when the hub leaf A is attached
// to is SIGKILLed in a 3-node hub cluster; then it prints a table with
// the ratio busbar / nats-server and the targets. Every process
// runs on 127.0.0.1, is started by leafbench and killed by it on exit.
// See bench/README.md, section "Leaf nodes".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/nats-io/nats.go"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "leafbench:", err)
		os.Exit(1)
	}
}

// scenario is one row group of the table.
type scenario struct {
	key, title string
	metrics    []string
	failover   bool // needs its own 3-hub cluster
	run        func(*topo) (map[string]float64, error)
}

// target is the goal for one busbar figure.
type target struct {
	text string
	ok   func(float64) bool
}

var targets = map[string]target{
	"tp128/" + mRate: {"≥ 150k", func(v float64) bool { return v >= 150e3 }},
	"rr/" + mP50:     {"≤ 1000", func(v float64) bool { return v <= 1000 }},
	"fail/" + mGap:   {"≤ 500", func(v float64) bool { return v <= 500 }},
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("leafbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	fs.IntVar(&cfg.count, "n", 2_000_000, "messages per throughput run (upper bound, see -max)")
	fs.DurationVar(&cfg.maxDur, "max", 4*time.Second, "publishing time limit of a throughput run")
	fs.IntVar(&cfg.window, "window", 8<<20, "publisher credit window in bytes (published, not yet received)")
	fs.IntVar(&cfg.requests, "requests", 5000, "sequential requests of the round-trip run")
	fs.IntVar(&cfg.rrSize, "rrsize", 128, "request and reply payload bytes")
	fs.IntVar(&cfg.rate, "rate", 1000, "messages/s of the failover run")
	fs.DurationVar(&cfg.killAfter, "kill-after", time.Second, "failover: paced publishing before hub1 is killed")
	fs.DurationVar(&cfg.tail, "tail", 3*time.Second, "failover: paced publishing after the kill (a gap is capped by it)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "a run fails after this long without progress")
	cfg.interestMax = 10 * time.Second
	count := fs.Int("count", 1, "repetitions of the whole run; the table shows the median and, above 1, min–max")
	kindsFlag := fs.String("leaves", "busbar,nats-server", "leaf kinds to run: busbar, nats-server")
	scen := fs.String("scenarios", "tp128,tp1k,rr,fail", "scenarios to run")
	natsBin := fs.String("nats-bin", "", "prebuilt nats-server binary (default: go build github.com/nats-io/nats-server/v2 of go.mod)")
	busbarBin := fs.String("busbar-bin", "", "prebuilt busbar binary taking -c FILE (default: go build ../cmd/busbar)")
	busbarArgs := fs.String("busbar-args", "", "extra space-separated arguments for the busbar leaves")
	keep := fs.Bool("keep", false, "keep the temporary directory (configurations and logs of every process)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.count <= 0 || cfg.requests <= 0 || cfg.rate <= 0 || *count <= 0 {
		return errors.New("-n, -requests, -rate and -count must be positive")
	}
	var kinds []leafKind
	for _, k := range strings.Split(*kindsFlag, ",") {
		switch k = strings.TrimSpace(k); k {
		case "busbar":
			kinds = append(kinds, kindBusbar)
		case "nats-server", "nats":
			kinds = append(kinds, kindNATS)
		case "":
		default:
			return fmt.Errorf("-leaves: unknown kind %q", k)
		}
	}
	all := []scenario{
		{key: "tp128", title: "A→B 128 B", metrics: []string{mRate, mMBps, mLeafCPU, mHubCPU},
			run: func(t *topo) (map[string]float64, error) { return runThroughput(t, cfg, 128) }},
		{key: "tp1k", title: "A→B 1 KiB", metrics: []string{mRate, mMBps, mLeafCPU, mHubCPU},
			run: func(t *topo) (map[string]float64, error) { return runThroughput(t, cfg, 1024) }},
		{key: "rr", title: fmt.Sprintf("request A→B %d B", cfg.rrSize), metrics: []string{mP50, mP99, mLeafReq},
			run: func(t *topo) (map[string]float64, error) { return runRoundTrip(t, cfg) }},
		{key: "fail", title: "failover (kill hub1)", metrics: []string{mGap, mLost}, failover: true,
			run: func(t *topo) (map[string]float64, error) { return runFailover(t, cfg) }},
	}
	var scs []scenario
	for _, k := range strings.Split(*scen, ",") {
		i := slices.IndexFunc(all, func(s scenario) bool { return s.key == strings.TrimSpace(k) })
		if i < 0 {
			return fmt.Errorf("-scenarios: unknown %q (have tp128, tp1k, rr, fail)", k)
		}
		scs = append(scs, all[i])
	}

	dir, err := os.MkdirTemp("", "leafbench-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintln(stderr, "logs and configurations in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	l := &lab{dir: dir, natsBin: *natsBin, busbarBin: *busbarBin, extraArgs: strings.Fields(*busbarArgs)}
	defer l.killAll()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		l.killAll()
		os.Exit(1)
	}()
	fmt.Fprintln(stderr, "building nats-server and busbar...")
	if err := l.build(); err != nil {
		return err
	}

	began := time.Now()
	res := results{}
	for rep := 0; rep < *count; rep++ {
		order := slices.Clone(kinds)
		if rep%2 == 1 {
			slices.Reverse(order)
		}
		if err := oneRun(l, scs, order, res, stderr); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "leafbench %s  %d CPUs (%s)  %s  nats.go %s  runtime %v\n",
		time.Now().Format("2006-01-02 15:04"), runtime.NumCPU(), runenv.CPUModel(), runtime.Version(), nats.Version, time.Since(began).Round(time.Second))
	fmt.Fprintf(stdout, "  hub nats-server %s; %d run(s); throughput ≤ %d msgs or %v, window %d B; %d requests; failover %d msgs/s, kill after %v, tail %v\n",
		l.version(), *count, cfg.count, cfg.maxDur, cfg.window, cfg.requests, cfg.rate, cfg.killAfter, cfg.tail)
	fmt.Fprintf(stdout, "  command: go run ./cmd/leafbench %s\n", strings.Join(args, " "))
	printTable(stdout, scs, kinds, res)
	return res.failed()
}

// oneRun measures every scenario once for every kind.
func oneRun(l *lab, scs []scenario, kinds []leafKind, res results, log io.Writer) error {
	var plain, fail []scenario
	for _, s := range scs {
		if s.failover {
			fail = append(fail, s)
		} else {
			plain = append(plain, s)
		}
	}
	if len(plain) > 0 {
		hubs, err := l.startHubs(1)
		if err != nil {
			return err
		}
		for _, k := range kinds {
			t, err := startPair(l, k, hubs, false)
			if err != nil {
				res.fail(plain, k, err, log)
				continue
			}
			for _, s := range plain {
				res.record(s, k, t, log)
			}
			t.a.stop()
			t.b.stop()
		}
		hubs[0].stop()
	}
	for _, s := range fail {
		for _, k := range kinds {
			hubs, err := l.startHubs(3)
			if err != nil {
				return err
			}
			t, err := startPair(l, k, hubs, true)
			if err != nil {
				res.fail([]scenario{s}, k, err, log)
			} else {
				res.record(s, k, t, log)
				t.a.kill()
				t.b.kill()
			}
			for _, h := range hubs {
				h.kill()
			}
		}
	}
	return nil
}

// startPair starts leaves A and B of kind k. With a cluster, A lists
// every hub (hub1 first, so it attaches there) and B only hub2.
func startPair(l *lab, k leafKind, hubs []*hub, cluster bool) (*topo, error) {
	t := &topo{hubs: hubs}
	var err error
	aURLs := []string{hubs[0].leafURL()}
	bHub := hubs[0]
	if cluster {
		aURLs = []string{hubs[0].leafURL(), hubs[1].leafURL(), hubs[2].leafURL()}
		bHub = hubs[1]
	}
	if t.a, err = l.startLeaf(k, "leafA-"+string(k), aURLs, hubs[0]); err != nil {
		return nil, err
	}
	if t.b, err = l.startLeaf(k, "leafB-"+string(k), []string{bHub.leafURL()}, bHub); err != nil {
		t.a.kill()
		return nil, err
	}
	return t, nil
}

// version asks the nats-server binary for its version.
func (l *lab) version() string {
	out, err := execOutput(l.natsBin, "--version")
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(out), "nats-server: ")
}

// results holds every run's figures by scenario key and kind, and the
// first error of each.
type results map[string]map[leafKind]*cell

type cell struct {
	runs []map[string]float64
	err  error
}

func (r results) get(key string, k leafKind) *cell {
	if r[key] == nil {
		r[key] = map[leafKind]*cell{}
	}
	if r[key][k] == nil {
		r[key][k] = &cell{}
	}
	return r[key][k]
}

func (r results) record(s scenario, k leafKind, t *topo, log io.Writer) {
	c := r.get(s.key, k)
	m, err := s.run(t)
	if err != nil {
		if !t.a.alive() || !t.b.alive() {
			err = fmt.Errorf("%w (a leaf process exited; see -keep logs)", err)
		}
		fmt.Fprintf(log, "%-6s %-12s ERROR %v\n", s.key, k, err)
		if c.err == nil {
			c.err = err
		}
		return
	}
	c.runs = append(c.runs, m)
	var parts []string
	for _, name := range s.metrics {
		parts = append(parts, fmt.Sprintf("%s %s", fmtNum(m[name]), name))
	}
	fmt.Fprintf(log, "%-6s %-12s %s\n", s.key, k, strings.Join(parts, ", "))
}

func (r results) fail(scs []scenario, k leafKind, err error, log io.Writer) {
	fmt.Fprintf(log, "%-12s leaves did not start: %v\n", k, err)
	for _, s := range scs {
		if c := r.get(s.key, k); c.err == nil {
			c.err = err
		}
	}
}

func (r results) failed() error {
	for _, byKind := range r {
		for _, c := range byKind {
			if c.err != nil {
				return errors.New("some runs failed (see the table)")
			}
		}
	}
	return nil
}

// stats returns the median, minimum and maximum of metric m over the
// runs, ok=false without runs.
func (c *cell) stats(m string) (med, lo, hi float64, n int) {
	if c == nil || len(c.runs) == 0 {
		return 0, 0, 0, 0
	}
	var vals []float64
	for _, r := range c.runs {
		vals = append(vals, r[m])
	}
	slices.Sort(vals)
	n = len(vals)
	med = vals[n/2]
	if n%2 == 0 {
		med = (vals[n/2-1] + vals[n/2]) / 2
	}
	return med, vals[0], vals[n-1], n
}

func printTable(w io.Writer, scs []scenario, kinds []leafKind, res results) {
	head := []string{"scenario", "metric"}
	for _, k := range kinds {
		head = append(head, string(k)+" leaves")
	}
	compare := len(kinds) == 2 && kinds[0] == kindBusbar && kinds[1] == kindNATS
	if compare {
		head = append(head, "ratio")
	}
	head = append(head, "busbar target")
	rows := [][]string{head}
	var errs []string
	for _, s := range scs {
		for mi, m := range s.metrics {
			row := []string{"", metricLabel(m)}
			if mi == 0 {
				row[0] = s.title
			}
			var meds []float64
			for _, k := range kinds {
				c := res[s.key][k]
				med, lo, hi, n := c.stats(m)
				switch {
				case c != nil && c.err != nil && n == 0:
					row = append(row, "ERROR")
				case n == 0:
					row = append(row, "-")
				case n == 1:
					row = append(row, fmtNum(med))
				default:
					row = append(row, fmt.Sprintf("%s (%s–%s)", fmtNum(med), fmtNum(lo), fmtNum(hi)))
				}
				meds = append(meds, med)
				if c != nil && c.err != nil && mi == 0 {
					errs = append(errs, fmt.Sprintf("%s, %s leaves: %v", s.title, k, c.err))
				}
			}
			if compare {
				_, _, _, n0 := res[s.key][kinds[0]].stats(m)
				_, _, _, n1 := res[s.key][kinds[1]].stats(m)
				if n0 > 0 && n1 > 0 && meds[1] != 0 {
					row = append(row, fmt.Sprintf("%.2f", meds[0]/meds[1]))
				} else {
					row = append(row, "-")
				}
			}
			tg, has := targets[s.key+"/"+m]
			switch {
			case !has:
				row = append(row, "")
			default:
				med, _, _, n := res[s.key][kindBusbar].stats(m)
				verdict := "-"
				if n > 0 && tg.ok(med) {
					verdict = "met"
				} else if n > 0 {
					verdict = "MISSED"
				}
				row = append(row, tg.text+" "+verdict)
			}
			rows = append(rows, row)
		}
	}
	width := make([]int, len(head))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var sb strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				sb.WriteString("  ")
			}
			if i < 2 || i == len(row)-1 {
				sb.WriteString(c + pad)
			} else {
				sb.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
	if compare {
		fmt.Fprint(w, "ratio = busbar / nats-server. ")
	}
	fmt.Fprintln(w, "(+) higher is better, (-) lower is better; cpu = user+system of the leaf processes (A+B) or the hub(s), per delivered message.")
	for _, e := range errs {
		fmt.Fprintln(w, "ERROR", e)
	}
}

func metricLabel(m string) string {
	if higherBetter[m] {
		return m + " (+)"
	}
	return m + " (-)"
}

func fmtNum(v float64) string {
	switch a := max(v, -v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
