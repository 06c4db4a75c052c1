// Command busbar-server runs an embedded busbar broker with a NATS listener
// for the natsbench driver. It prints "LISTEN host:port" on stdout once
// ready, and exits when stdin reaches EOF (the driver closed its pipe or
// died) or on SIGINT/SIGTERM. -cpuprofile profiles the broker for
// investigating a natsbench result.
//
// With -ws-port it also serves NATS over plain WebSocket (ws://, package
// websocket with default options, upgraded connections served by the same
// NATS transport) and prints "WSLISTEN host:port" before the LISTEN line,
// so LISTEN still means every listener is ready.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

func main() {
	host := flag.String("host", "127.0.0.1", "bind `HOST`")
	port := flag.Int("port", 0, "NATS `PORT` (0: pick a free one)")
	wsPort := flag.Int("ws-port", -1, "also serve NATS over WebSocket on `PORT` (0: pick a free one; -1: no WebSocket listener)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `FILE` until exit")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}

	b, err := broker.New(broker.Options{})
	if err != nil {
		fatal(err)
	}
	t, err := natsproto.New(natsproto.Options{Host: *host, Port: *port})
	if err != nil {
		fatal(err)
	}
	if err := t.Listen(); err != nil {
		fatal(err)
	}
	services := []broker.Service{t}
	var wt *websocket.Transport
	if *wsPort >= 0 {
		// The NATS transport serves the upgraded connections too, so both
		// listeners share its options.
		wt, err = websocket.New(websocket.Options{Host: *host, Port: *wsPort, NATS: t})
		if err != nil {
			fatal(err)
		}
		if err := wt.Listen(); err != nil {
			fatal(err)
		}
		services = append(services, wt)
	}
	if err := b.Start(services...); err != nil {
		fatal(err)
	}
	if wt != nil {
		fmt.Printf("WSLISTEN %s\n", wt.Addr())
	}
	fmt.Printf("LISTEN %s\n", t.Addr())

	runenv.WaitForStop(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.Shutdown(ctx)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "busbar-server:", err)
	os.Exit(1)
}
