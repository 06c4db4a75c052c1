// Command busbar-server runs an embedded busbar broker with a NATS listener
// for the natsbench driver. It prints "LISTEN host:port" on stdout once
// ready, and exits when stdin reaches EOF (the driver closed its pipe or
// died) or on SIGINT/SIGTERM. -cpuprofile profiles the broker for
// investigating a natsbench result.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

func main() {
	host := flag.String("host", "127.0.0.1", "bind `HOST`")
	port := flag.Int("port", 0, "NATS `PORT` (0: pick a free one)")
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
	if err := b.Start(t); err != nil {
		fatal(err)
	}
	fmt.Printf("LISTEN %s\n", t.Addr())

	waitForStop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.Shutdown(ctx)
}

// waitForStop blocks until stdin closes or a termination signal arrives.
func waitForStop() {
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		done <- struct{}{}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "busbar-server:", err)
	os.Exit(1)
}
