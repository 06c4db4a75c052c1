package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busbar/busbar/bench/internal/errlist"
	"github.com/nats-io/nats.go"
)

// Metric names (the table prints them in this order, per scenario).
const (
	mRate      = "msgs/s"        // delivered messages per second
	mMBps      = "MB/s"          // delivered payload megabytes per second
	mCPU       = "cpu µs/msg"    // broker CPU per delivered message
	mReqRate   = "req/s"         // completed requests per second
	mCPUReq    = "cpu µs/req"    // broker CPU per request (request + reply)
	mP50       = "p50 µs"        // latency percentiles
	mP99       = "p99 µs"        //
	mP999      = "p99.9 µs"      //
	mRSSConn   = "rss KiB/conn"  // resident memory growth per idle connection
	mRSSBase   = "rss MiB start" // resident memory of a fresh server
	mConnRate  = "conns/s"       // connection setup rate (idle scenario)
	mCPUConnMs = "cpu ms/1k conns"
)

// higherBetter lists the metrics where a larger figure is better.
var higherBetter = map[string]bool{mRate: true, mMBps: true, mReqRate: true, mConnRate: true}

// config is what the scenarios read from the flags.
type config struct {
	duration    time.Duration
	sizes       []int
	wsSizes     []int // sizes of the WebSocket flow scenarios
	fanout      int
	pairs       int
	requesters  []int
	rate        int
	latSize     int
	rrSize      int
	conns       int
	windowBytes int
	timeout     time.Duration // no-progress limit while draining
}

// connect opens a nats.go connection that never reconnects (a broker that
// drops us should show as an error, not be papered over) and records
// asynchronous errors in el. Dialing and every write give up after
// timeout.
func connect(url, name string, el *errlist.List, timeout time.Duration) (*nats.Conn, error) {
	return nats.Connect(url,
		nats.Name(name),
		nats.NoReconnect(),
		nats.Timeout(timeout),
		nats.FlusherTimeout(timeout), // a stuck broker fails the run
		nats.DrainTimeout(timeout),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = " on " + sub.Subject
			}
			el.Add("%s: async error%s: %v", name, subj, err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				el.Add("%s: disconnected: %v", name, err)
			}
		}),
	)
}

// counter is one subscriber's tally. Its handler runs on the
// subscription's single delivery goroutine; others read it atomically.
type counter struct {
	n           atomic.Int64
	first, last atomic.Int64 // nanoseconds since the run's base time
}

// flowSpec shapes a throughput run: pubs publisher connections, each
// publishing to subject bench.<i mod subjects>, and subsPerSubject
// subscriber connections on every subject. With ws every connection
// (publishers and subscribers) goes over the server's WebSocket listener.
type flowSpec struct {
	pubs, subjects, subsPerSubject int
	ws                             bool
}

// runFlow publishes size-byte messages for cfg.duration according to
// spec, waits until every subscriber has received everything, and
// reports delivered throughput and the broker's CPU per delivered
// message.
//
// Publishers are bounded by a credit window: a publisher stops while more
// than cfg.windowBytes (at least 1000 messages) are published but not yet
// received by the slowest subscriber of its subject. That keeps the
// brokers' per-connection outbound buffers far below their 64 MiB
// slow-consumer limit, and nats.go's buffers bounded, while the pipeline
// stays full.
func runFlow(srv *server, cfg *config, spec flowSpec, size int) (map[string]float64, error) {
	el := &errlist.List{}
	base := time.Now()
	url := srv.url()
	if spec.ws {
		url = srv.wsURL()
	}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()

	counters := make([][]*counter, spec.subjects)
	for s := 0; s < spec.subjects; s++ {
		subj := fmt.Sprintf("bench.%d", s)
		for j := 0; j < spec.subsPerSubject; j++ {
			nc, err := connect(url, fmt.Sprintf("sub-%d-%d", s, j), el, cfg.timeout)
			if err != nil {
				return nil, err
			}
			conns = append(conns, nc)
			c := &counter{}
			counters[s] = append(counters[s], c)
			sub, err := nc.Subscribe(subj, func(*nats.Msg) {
				now := int64(time.Since(base))
				if c.n.Add(1) == 1 {
					c.first.Store(now)
				}
				c.last.Store(now)
			})
			if err != nil {
				return nil, err
			}
			if err := sub.SetPendingLimits(-1, -1); err != nil {
				return nil, err
			}
			if err := nc.Flush(); err != nil { // SUB is registered
				return nil, err
			}
		}
	}
	pubConns := make([]*nats.Conn, spec.pubs)
	for i := range pubConns {
		nc, err := connect(url, fmt.Sprintf("pub-%d", i), el, cfg.timeout)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		pubConns[i] = nc
	}

	wire := size + 40 // payload plus approximate MSG line
	window := int64(max(1000, cfg.windowBytes/wire))
	batch := int64(min(max(16, 64<<10/wire), 1024))
	published := make([]atomic.Int64, spec.subjects)
	minRecv := func(s int) int64 {
		m := int64(-1)
		for _, c := range counters[s] {
			if n := c.n.Load(); m < 0 || n < m {
				m = n
			}
		}
		return m
	}

	cpu0, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	payload := make([]byte, size)
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	pubErr := make(chan error, spec.pubs)
	for i, nc := range pubConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := i % spec.subjects
			subj := fmt.Sprintf("bench.%d", s)
			var mine int64
			for time.Now().Before(deadline) {
				for k := int64(0); k < batch; k++ {
					if err := nc.Publish(subj, payload); err != nil {
						pubErr <- err
						return
					}
				}
				mine += batch
				total := published[s].Add(batch)
				// Credit window: wait for the slowest subscriber.
				stall := time.Now()
				for total-minRecv(s) > window {
					if time.Since(stall) > cfg.timeout {
						pubErr <- fmt.Errorf("publisher %d: no delivery progress for %v (%d published, slowest subscriber at %d)", i, cfg.timeout, total, minRecv(s))
						return
					}
					time.Sleep(20 * time.Microsecond)
				}
			}
			if err := nc.Flush(); err != nil {
				pubErr <- err
			}
		}()
	}
	wg.Wait()
	close(pubErr)
	for err := range pubErr {
		if err != nil {
			return nil, errors.Join(err, el.Err())
		}
	}

	// Drain: wait for every subscriber to have everything published on
	// its subject, giving up after cfg.timeout without progress.
	var want, got int64
	for s := range counters {
		want += published[s].Load() * int64(len(counters[s]))
	}
	lastProgress, lastGot := time.Now(), int64(-1)
	for {
		got = 0
		for s := range counters {
			for _, c := range counters[s] {
				got += min(c.n.Load(), published[s].Load())
			}
		}
		if got >= want {
			break
		}
		if got != lastGot {
			lastGot, lastProgress = got, time.Now()
		} else if time.Since(lastProgress) > cfg.timeout {
			return nil, errors.Join(fmt.Errorf("received %d of %d messages; nothing more for %v", got, want, cfg.timeout), el.Err())
		}
		if !srv.alive() {
			return nil, fmt.Errorf("%s exited during the run", srv.kind.Name)
		}
		time.Sleep(time.Millisecond)
	}
	cpu1, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	if err := el.Err(); err != nil {
		return nil, err
	}

	first, last := int64(-1), int64(0)
	var delivered int64
	for s := range counters {
		for _, c := range counters[s] {
			delivered += c.n.Load()
			if f := c.first.Load(); first < 0 || f < first {
				first = f
			}
			last = max(last, c.last.Load())
		}
	}
	span := time.Duration(last - first).Seconds()
	if span <= 0 || delivered < 2 {
		return nil, fmt.Errorf("too few messages delivered (%d)", delivered)
	}
	rate := float64(delivered) / span
	return map[string]float64{
		mRate: rate,
		mMBps: rate * float64(size) / 1e6,
		mCPU:  (cpu1 - cpu0).Seconds() * 1e6 / float64(delivered),
	}, nil
}

// runReqRep runs one responder connection and n requester connections,
// each sending requests one after another for cfg.duration.
func runReqRep(srv *server, cfg *config, n int) (map[string]float64, error) {
	el := &errlist.List{}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	rc, err := connect(srv.url(), "responder", el, cfg.timeout)
	if err != nil {
		return nil, err
	}
	conns = append(conns, rc)
	sub, err := rc.Subscribe("bench.rr", func(m *nats.Msg) {
		if err := m.Respond(m.Data); err != nil {
			el.Add("respond: %v", err)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := rc.Flush(); err != nil {
		return nil, err
	}
	reqConns := make([]*nats.Conn, n)
	for i := range reqConns {
		nc, err := connect(srv.url(), fmt.Sprintf("requester-%d", i), el, cfg.timeout)
		if err != nil {
			return nil, err
		}
		conns = append(conns, nc)
		reqConns[i] = nc
		// Warm up: the first request sets up the response subscription.
		if _, err := nc.Request("bench.rr", []byte("warmup"), 5*time.Second); err != nil {
			return nil, fmt.Errorf("warm-up request: %w", err)
		}
	}

	payload := make([]byte, cfg.rrSize)
	lats := make([][]time.Duration, n)
	errs := make([]error, n)
	cpu0, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i, nc := range reqConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<16)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if _, err := nc.Request("bench.rr", payload, cfg.timeout); err != nil {
					errs[i] = fmt.Errorf("requester %d: %w", i, err)
					break
				}
				l = append(l, time.Since(t0))
			}
			lats[i] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	if err := errors.Join(errors.Join(errs...), el.Err()); err != nil {
		return nil, err
	}
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return nil, errors.New("no request completed")
	}
	m := percentiles(all)
	m[mReqRate] = float64(len(all)) / elapsed.Seconds()
	m[mCPUReq] = (cpu1 - cpu0).Seconds() * 1e6 / float64(len(all))
	return m, nil
}

// runLatency publishes cfg.latSize-byte messages at cfg.rate per second
// for cfg.duration, each stamped with its send time, and measures
// one-way publish-to-delivery latency at the subscriber. At a rate far
// below either broker's capacity this is transit time, not queueing. The
// first 10% of messages are warm-up and not counted.
func runLatency(srv *server, cfg *config) (map[string]float64, error) {
	el := &errlist.List{}
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	total := int(float64(cfg.rate) * cfg.duration.Seconds())
	skip := total / 10
	if total-skip < 100 {
		return nil, fmt.Errorf("rate × duration gives only %d messages", total)
	}
	base := time.Now()
	lats := make([]time.Duration, total)
	var recv atomic.Int64
	sc, err := connect(srv.url(), "lat-sub", el, cfg.timeout)
	if err != nil {
		return nil, err
	}
	conns = append(conns, sc)
	sub, err := sc.Subscribe("bench.lat", func(m *nats.Msg) {
		now := time.Since(base)
		if len(m.Data) < 16 {
			return
		}
		sent := time.Duration(binary.LittleEndian.Uint64(m.Data))
		seq := binary.LittleEndian.Uint64(m.Data[8:])
		if seq < uint64(len(lats)) {
			lats[seq] = now - sent
		}
		recv.Add(1)
	})
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	if err := sc.Flush(); err != nil {
		return nil, err
	}
	pc, err := connect(srv.url(), "lat-pub", el, cfg.timeout)
	if err != nil {
		return nil, err
	}
	conns = append(conns, pc)

	payload := make([]byte, max(16, cfg.latSize))
	interval := time.Second / time.Duration(cfg.rate)
	cpu0, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for n := 0; n < total; {
		due := min(int(time.Since(start)/interval)+1, total)
		for ; n < due; n++ {
			binary.LittleEndian.PutUint64(payload, uint64(time.Since(base)))
			binary.LittleEndian.PutUint64(payload[8:], uint64(n))
			if err := pc.Publish("bench.lat", payload); err != nil {
				return nil, err
			}
		}
		if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
			time.Sleep(d)
		}
	}
	if err := pc.Flush(); err != nil {
		return nil, err
	}
	lastProgress, lastGot := time.Now(), int64(-1)
	for recv.Load() < int64(total) {
		if got := recv.Load(); got != lastGot {
			lastGot, lastProgress = got, time.Now()
		} else if time.Since(lastProgress) > cfg.timeout {
			return nil, errors.Join(fmt.Errorf("received %d of %d messages", got, total), el.Err())
		}
		time.Sleep(time.Millisecond)
	}
	cpu1, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	if err := el.Err(); err != nil {
		return nil, err
	}
	m := percentiles(lats[skip:])
	m[mCPU] = (cpu1 - cpu0).Seconds() * 1e6 / float64(total)
	return m, nil
}

// percentiles sorts d in place and returns p50, p99 and p99.9 in µs.
func percentiles(d []time.Duration) map[string]float64 {
	slices.Sort(d)
	at := func(p float64) float64 {
		i := min(int(p*float64(len(d))), len(d)-1)
		return float64(d[i]) / float64(time.Microsecond)
	}
	return map[string]float64{mP50: at(0.50), mP99: at(0.99), mP999: at(0.999)}
}

// runIdle opens cfg.conns raw NATS connections (connect, read INFO, send
// CONNECT {} and PING, read PONG) and leaves them idle, reporting the
// broker's resident memory growth per connection. With ws they are
// WebSocket connections (see rawWSConnect).
func runIdle(srv *server, cfg *config, ws bool) (map[string]float64, error) {
	dial := rawConnect
	addr := srv.addr
	if ws {
		dial, addr = rawWSConnect, srv.ws
	}
	time.Sleep(300 * time.Millisecond) // let the fresh server settle
	rss0, err := srv.rss()
	if err != nil {
		return nil, err
	}
	cpu0, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	conns := make([]net.Conn, cfg.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	const workers = 32
	var next atomic.Int64
	errs := make([]error, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				c, err := dial(addr)
				if err != nil {
					errs[w] = fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cpu1, err := srv.cpuTime()
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // let lazily allocated buffers show
	rss1, err := srv.rss()
	if err != nil {
		return nil, err
	}
	if !srv.alive() {
		return nil, fmt.Errorf("%s exited during the run", srv.kind.Name)
	}
	n := float64(cfg.conns)
	return map[string]float64{
		mRSSConn:   float64(rss1-rss0) / 1024 / n,
		mRSSBase:   float64(rss0) / (1 << 20),
		mConnRate:  n / elapsed.Seconds(),
		mCPUConnMs: (cpu1 - cpu0).Seconds() * 1e3 / n * 1000,
	}, nil
}

// rawConnect does the NATS handshake by hand and returns the open
// connection.
func rawConnect(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) { _ = c.Close(); return nil, err }
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReaderSize(c, 4096)
	line, err := r.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("reading INFO: %w", err))
	}
	if !strings.HasPrefix(line, "INFO ") {
		return fail(fmt.Errorf("expected INFO, got %q", line))
	}
	if _, err := c.Write([]byte("CONNECT {}\r\nPING\r\n")); err != nil {
		return fail(err)
	}
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			return fail(fmt.Errorf("waiting for PONG: %w", err))
		}
		switch strings.TrimSpace(line) {
		case "PONG":
			_ = c.SetDeadline(time.Time{})
			return c, nil
		case "+OK":
		default:
			return fail(fmt.Errorf("unexpected %q", strings.TrimSpace(line)))
		}
	}
}
