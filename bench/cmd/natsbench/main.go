// Command natsbench drives the same nats.go load against busbar and
// nats-server, each running in its own child process on loopback, and
// prints a side-by-side table: throughput, latency, broker CPU per message
// (read from /proc/<pid>/stat) and memory per idle connection (VmRSS).
//
//	cd bench && go run ./cmd/natsbench
//
// See bench/README.md for what each scenario measures.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/nats-io/nats.go"
)

// Result is one broker's figures for one scenario variant.
type Result struct {
	Scenario string               `json:"scenario"`
	Variant  string               `json:"variant"`
	Broker   string               `json:"broker"`
	Metrics  map[string]float64   `json:"metrics,omitempty"` // median of Runs
	Runs     []map[string]float64 `json:"runs,omitempty"`
	Error    string               `json:"error,omitempty"`
}

// variant is one row group of a scenario: a label and the run itself.
type variant struct {
	label string
	run   func(*server) (map[string]float64, error)
}

// scenario is a named list of variants that share fresh servers.
type scenario struct {
	key, title string
	metrics    []string
	variants   []variant
	fresh      bool // every run gets a newly started server
	ws         bool // the servers also listen for WebSocket (-ws-port)
}

// allScenarios is the default list. The WebSocket scenarios are left out
// of it (they add about a minute); "ws" selects all three.
var (
	allScenarios = []string{"pubsub", "fanout", "multi", "reqrep", "latency", "idle"}
	wsScenarios  = []string{"wspubsub", "wsfanout", "wsidle"}
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "natsbench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("natsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	fs.DurationVar(&cfg.duration, "duration", time.Second, "publishing time of each throughput, request/reply and latency run")
	count := fs.Int("count", 3, "runs of each scenario variant per broker; the table shows the median")
	sizes := fs.String("sizes", "16,128,1024,16384", "payload `BYTES` list of the pubsub, fanout and multi scenarios")
	wsSizes := fs.String("ws-sizes", "16,1024", "payload `BYTES` list of the wspubsub and wsfanout scenarios")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run, comma separated (also: "+strings.Join(wsScenarios, ", ")+"; \"ws\" for those three)")
	fs.IntVar(&cfg.conns, "conns", 5000, "idle connections opened by the idle and wsidle scenarios")
	fs.IntVar(&cfg.fanout, "fanout", 8, "subscriber connections of the fanout scenario")
	fs.IntVar(&cfg.pairs, "pairs", 4, "publisher/subscriber pairs of the multi scenario")
	reqs := fs.String("requesters", "1,4", "concurrent requester connections of the reqrep scenario, comma separated list")
	fs.IntVar(&cfg.rate, "rate", 20000, "messages per second of the latency scenario")
	fs.IntVar(&cfg.latSize, "latsize", 128, "payload bytes of the latency scenario (at least 16)")
	fs.IntVar(&cfg.rrSize, "rrsize", 128, "payload bytes of requests and replies")
	fs.IntVar(&cfg.windowBytes, "window", 8<<20, "publisher credit window in bytes (published but not yet received)")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "give up a run after this long without progress")
	brokers := fs.String("brokers", "busbar,nats-server", "brokers to run: busbar, nats-server")
	busbarBin := fs.String("busbar-bin", "", "prebuilt busbar-server binary (default: go build ./cmd/busbar-server)")
	busbarArgs := fs.String("busbar-args", "", "extra space-separated arguments for busbar-server, e.g. \"-cpuprofile /tmp/busbar.pprof\" (each scenario restarts the server, so profile one scenario at a time)")
	natsBin := fs.String("nats-bin", "", "prebuilt natsserver binary (default: go build ./cmd/natsserver)")
	jsonOut := fs.String("json", "", "also write raw results as JSON to `FILE` ('-' for stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.sizes, err = parseInts(*sizes); err != nil {
		return fmt.Errorf("-sizes: %w", err)
	}
	if cfg.wsSizes, err = parseInts(*wsSizes); err != nil {
		return fmt.Errorf("-ws-sizes: %w", err)
	}
	if cfg.requesters, err = parseInts(*reqs); err != nil {
		return fmt.Errorf("-requesters: %w", err)
	}
	if cfg.duration <= 0 || cfg.rate <= 0 || cfg.fanout <= 0 || cfg.pairs <= 0 || cfg.conns <= 0 || *count <= 0 {
		return errors.New("-duration, -rate, -fanout, -pairs, -conns and -count must be positive")
	}

	var kinds []*brokerKind
	for _, name := range splitList(*brokers) {
		switch name {
		case "busbar":
			kinds = append(kinds, &brokerKind{Name: "busbar", Pkg: "cmd/busbar-server", Bin: *busbarBin, Args: strings.Fields(*busbarArgs)})
		case "nats-server", "nats":
			kinds = append(kinds, &brokerKind{Name: "nats-server", Pkg: "cmd/natsserver", Bin: *natsBin})
		default:
			return fmt.Errorf("-brokers: unknown broker %q", name)
		}
	}
	if len(kinds) == 0 {
		return errors.New("-brokers: none given")
	}

	scenarios, err := buildScenarios(cfg, splitList(*scen))
	if err != nil {
		return err
	}
	anyWS := slices.ContainsFunc(scenarios, func(sc scenario) bool { return sc.ws })

	// 2 sockets per idle connection across driver and one broker, plus
	// headroom; children inherit the limit.
	if limit, err := raiseNoFile(uint64(cfg.conns) + 1024); err != nil {
		fmt.Fprintf(stderr, "warning: cannot raise RLIMIT_NOFILE: %v\n", err)
	} else if limit < uint64(cfg.conns)+64 {
		fmt.Fprintf(stderr, "warning: RLIMIT_NOFILE is %d, the idle scenario needs about %d\n", limit, cfg.conns+64)
	}

	tmp, err := os.MkdirTemp("", "natsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(stderr, "building servers...")
	if err := buildServers(tmp, kinds); err != nil {
		return err
	}
	versions := map[string]string{}
	for _, k := range kinds {
		v, err := probe(k, anyWS)
		if err != nil {
			return err
		}
		versions[k.Name] = v
	}

	began := time.Now()
	var results []Result
	for _, sc := range scenarios {
		servers := map[string]*server{}
		startErr := map[string]error{}
		for _, k := range kinds {
			servers[k.Name], startErr[k.Name] = startServer(k, sc.ws)
		}
		for _, v := range sc.variants {
			byBroker := map[string]*Result{}
			for _, k := range kinds {
				byBroker[k.Name] = &Result{Scenario: sc.key, Variant: v.label, Broker: k.Name}
			}
			for rep := 0; rep < *count; rep++ {
				// Alternate which broker goes first, so neither always
				// runs on a machine just warmed up by the other.
				for i := range kinds {
					k := kinds[(i+rep)%len(kinds)]
					r := byBroker[k.Name]
					if r.Error != "" {
						continue
					}
					// A fresh server when the scenario wants one per run, or
					// when an earlier variant's run left it dead.
					s := servers[k.Name]
					if s != nil && ((sc.fresh && rep > 0) || !s.alive()) {
						s.stop()
						servers[k.Name], startErr[k.Name] = startServer(k, sc.ws)
						s = servers[k.Name]
					}
					switch {
					case s == nil:
						r.Error = fmt.Sprintf("server not started: %v", startErr[k.Name])
					default:
						m, err := v.run(s)
						if err != nil {
							r.Error = err.Error()
							select { // did the broker die?
							case <-s.done:
							case <-time.After(200 * time.Millisecond):
							}
							if !s.alive() {
								r.Error = fmt.Sprintf("%s exited (%v): %s", k.Name, s.cmd.ProcessState, r.Error)
							}
						} else {
							r.Runs = append(r.Runs, m)
						}
					}
					one := Result{Error: r.Error}
					if r.Error == "" {
						one.Metrics = r.Runs[len(r.Runs)-1]
					}
					fmt.Fprintf(stderr, "%-8s %-14s %-12s #%d %s\n", sc.key, v.label, k.Name, rep+1, summary(sc, one))
				}
			}
			for _, k := range kinds {
				r := byBroker[k.Name]
				if r.Error == "" {
					r.Metrics = medians(r.Runs)
				}
				results = append(results, *r)
			}
		}
		for _, s := range servers {
			if s != nil {
				s.stop()
			}
		}
	}

	header := fmt.Sprintf("natsbench %s  %d CPUs (%s)  %s  nats.go %s  runtime %v\n",
		time.Now().Format("2006-01-02 15:04"), runtime.NumCPU(), runenv.CPUModel(), runtime.Version(), nats.Version, time.Since(began).Round(time.Second))
	for _, k := range kinds {
		header += fmt.Sprintf("  %s %s\n", k.Name, versions[k.Name])
	}
	header += fmt.Sprintf("  %s per broker (table: median), duration %v, credit window %d B, latency %d msgs/s x %d B, request/reply %d B\n",
		plural(*count, "run"), cfg.duration, cfg.windowBytes, cfg.rate, cfg.latSize, cfg.rrSize)
	fmt.Fprint(stdout, header)
	printTable(stdout, scenarios, kinds, results)

	if *jsonOut != "" {
		doc := struct {
			Date     string            `json:"date"`
			CPUs     int               `json:"cpus"`
			CPUModel string            `json:"cpu_model"`
			Go       string            `json:"go"`
			Versions map[string]string `json:"versions"`
			Results  []Result          `json:"results"`
		}{time.Now().Format(time.RFC3339), runtime.NumCPU(), runenv.CPUModel(), runtime.Version(), versions, results}
		js, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		js = append(js, '\n')
		if *jsonOut == "-" {
			_, err = stdout.Write(js)
		} else {
			err = os.WriteFile(*jsonOut, js, 0o644)
		}
		if err != nil {
			return err
		}
	}
	for _, r := range results {
		if r.Error != "" {
			return errors.New("some runs failed (see the table)")
		}
	}
	return nil
}

func buildScenarios(cfg *config, keys []string) ([]scenario, error) {
	var out []scenario
	flow := func(spec flowSpec) []variant {
		sizes := cfg.sizes
		if spec.ws {
			sizes = cfg.wsSizes
		}
		var vs []variant
		for _, size := range sizes {
			vs = append(vs, variant{label: sizeLabel(size), run: func(s *server) (map[string]float64, error) {
				return runFlow(s, cfg, spec, size)
			}})
		}
		return vs
	}
	flowMetrics := []string{mRate, mMBps, mCPU}
	idleMetrics := []string{mRSSConn, mRSSBase, mConnRate, mCPUConnMs}
	var expanded []string
	for _, key := range keys {
		if key == "ws" {
			expanded = append(expanded, wsScenarios...)
		} else {
			expanded = append(expanded, key)
		}
	}
	for _, key := range expanded {
		switch key {
		case "pubsub":
			out = append(out, scenario{key: key, title: "pub/sub 1->1", metrics: flowMetrics,
				variants: flow(flowSpec{pubs: 1, subjects: 1, subsPerSubject: 1})})
		case "fanout":
			out = append(out, scenario{key: key, title: fmt.Sprintf("fan-out 1->%d", cfg.fanout), metrics: flowMetrics,
				variants: flow(flowSpec{pubs: 1, subjects: 1, subsPerSubject: cfg.fanout})})
		case "multi":
			out = append(out, scenario{key: key, title: fmt.Sprintf("%d x (1->1), %d subjects", cfg.pairs, cfg.pairs), metrics: flowMetrics,
				variants: flow(flowSpec{pubs: cfg.pairs, subjects: cfg.pairs, subsPerSubject: 1})})
		case "reqrep":
			var vs []variant
			for _, n := range cfg.requesters {
				vs = append(vs, variant{label: plural(n, "requester"), run: func(s *server) (map[string]float64, error) {
					return runReqRep(s, cfg, n)
				}})
			}
			out = append(out, scenario{key: key, title: fmt.Sprintf("request/reply %s", sizeLabel(cfg.rrSize)),
				metrics: []string{mReqRate, mP50, mP99, mCPUReq}, variants: vs})
		case "latency":
			out = append(out, scenario{key: key, title: fmt.Sprintf("paced latency %d/s", cfg.rate), metrics: []string{mP50, mP99, mCPU},
				variants: []variant{{label: sizeLabel(max(16, cfg.latSize)), run: func(s *server) (map[string]float64, error) {
					return runLatency(s, cfg)
				}}}})
		case "idle":
			out = append(out, scenario{key: key, title: "idle connections", metrics: idleMetrics,
				variants: []variant{{label: fmt.Sprintf("%d conns", cfg.conns), run: func(s *server) (map[string]float64, error) {
					return runIdle(s, cfg, false)
				}}}, fresh: true})
		case "wspubsub":
			out = append(out, scenario{key: key, title: "ws pub/sub 1->1", metrics: flowMetrics,
				variants: flow(flowSpec{pubs: 1, subjects: 1, subsPerSubject: 1, ws: true}), ws: true})
		case "wsfanout":
			out = append(out, scenario{key: key, title: fmt.Sprintf("ws fan-out 1->%d", cfg.fanout), metrics: flowMetrics,
				variants: flow(flowSpec{pubs: 1, subjects: 1, subsPerSubject: cfg.fanout, ws: true}), ws: true})
		case "wsidle":
			out = append(out, scenario{key: key, title: "idle ws connections", metrics: idleMetrics,
				variants: []variant{{label: fmt.Sprintf("%d conns", cfg.conns), run: func(s *server) (map[string]float64, error) {
					return runIdle(s, cfg, true)
				}}}, fresh: true, ws: true})
		default:
			return nil, fmt.Errorf("-scenarios: unknown scenario %q (have %s, %s, ws)", key,
				strings.Join(allScenarios, ","), strings.Join(wsScenarios, ","))
		}
	}
	return out, nil
}

// probe starts kind once to check it serves nats.go (with ws, over
// WebSocket too) and to learn its version.
func probe(k *brokerKind, ws bool) (string, error) {
	s, err := startServer(k, ws)
	if err != nil {
		return "", err
	}
	defer s.stop()
	urls := []string{s.url()}
	if ws {
		urls = append(urls, s.wsURL())
	}
	var version string
	for _, u := range urls {
		nc, err := nats.Connect(u, nats.NoReconnect())
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", k.Name, u, err)
		}
		err = nc.Flush()
		version = nc.ConnectedServerVersion()
		nc.Close()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", k.Name, u, err)
		}
	}
	return version, nil
}

func summary(sc scenario, r Result) string {
	if r.Error != "" {
		return "ERROR: " + r.Error
	}
	var parts []string
	for _, m := range sc.metrics {
		parts = append(parts, fmt.Sprintf("%s %s", fmtNum(r.Metrics[m]), m))
	}
	return strings.Join(parts, ", ")
}

func printTable(w io.Writer, scs []scenario, kinds []*brokerKind, results []Result) {
	find := func(sc, v, b string) *Result {
		for i := range results {
			if r := &results[i]; r.Scenario == sc && r.Variant == v && r.Broker == b {
				return r
			}
		}
		return nil
	}
	compare := len(kinds) == 2
	head := []string{"scenario", "variant", "metric"}
	for _, k := range kinds {
		head = append(head, k.Name)
	}
	if compare {
		head = append(head, "ratio")
	}
	rows := [][]string{head}
	var errs []string
	for _, sc := range scs {
		for vi, v := range sc.variants {
			for mi, m := range sc.metrics {
				row := []string{"", "", metricLabel(m)}
				if vi == 0 && mi == 0 {
					row[0] = sc.title
				}
				if mi == 0 {
					row[1] = v.label
				}
				var vals []float64
				ok := true
				for _, k := range kinds {
					r := find(sc.key, v.label, k.Name)
					if r == nil || r.Error != "" {
						row = append(row, "ERROR")
						ok = false
						continue
					}
					vals = append(vals, r.Metrics[m])
					row = append(row, fmtNum(r.Metrics[m]))
				}
				if compare {
					if ok && vals[1] != 0 {
						row = append(row, fmt.Sprintf("%.2f", vals[0]/vals[1]))
					} else {
						row = append(row, "-")
					}
				}
				rows = append(rows, row)
			}
			for _, k := range kinds {
				if r := find(sc.key, v.label, k.Name); r != nil && r.Error != "" {
					errs = append(errs, fmt.Sprintf("%s %s %s: %s", sc.title, v.label, k.Name, r.Error))
				}
			}
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
			if i < 3 { // text columns: left aligned
				sb.WriteString(c + pad)
			} else {
				sb.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
	if compare {
		fmt.Fprintf(w, "ratio = %s / %s. ", kinds[0].Name, kinds[1].Name)
	}
	fmt.Fprintln(w, "(+) higher is better, (-) lower is better; cpu is the broker process's user+system time.")
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

func sizeLabel(n int) string {
	switch {
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// medians returns, per metric, the median over runs (the mean of the two
// middle values for an even count).
func medians(runs []map[string]float64) map[string]float64 {
	out := map[string]float64{}
	if len(runs) == 0 {
		return out
	}
	for m := range runs[0] {
		vals := make([]float64, 0, len(runs))
		for _, r := range runs {
			vals = append(vals, r[m])
		}
		slices.Sort(vals)
		n := len(vals)
		if n%2 == 1 {
			out[m] = vals[n/2]
		} else {
			out[m] = (vals[n/2-1] + vals[n/2]) / 2
		}
	}
	return out
}
