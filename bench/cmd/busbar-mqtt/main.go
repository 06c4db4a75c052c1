// Command busbar-mqtt runs busbar with only an MQTT listener, for
// mqttpeer and durablebench to measure in its own process. With
// -store-dir it uses the durable file store (store/filestore) there: a
// QoS 1 PUBACK then goes only after the message is fdatasync'ed.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/store/filestore"
)

func main() {
	port := flag.Int("port", 0, "MQTT port (0: free)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file (until SIGINT/SIGTERM)")
	storeDir := flag.String("store-dir", "", "durable store `DIR` (filestore; empty: in-memory store)")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	var opts broker.Options
	var st *filestore.Store
	if *storeDir != "" {
		var err error
		if st, err = filestore.Open(*storeDir, filestore.Options{}); err != nil {
			log.Fatal(err)
		}
		opts.Store = st
	}
	b, err := broker.New(opts)
	if err != nil {
		log.Fatal(err)
	}
	t, err := mqtt.New(mqtt.Options{Host: "127.0.0.1", Port: *port})
	if err != nil {
		log.Fatal(err)
	}
	if err := t.Listen(); err != nil {
		log.Fatal(err)
	}
	if err := b.Start(t); err != nil {
		log.Fatal(err)
	}
	fmt.Println(t.Addr().String())
	runenv.WaitForStop(false)
	if st != nil {
		// The store closes only after the broker has stopped writing to it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := b.Shutdown(ctx); err != nil {
			log.Print(err)
		}
		cancel()
		if err := st.Close(); err != nil {
			log.Print(err)
		}
	}
}
