// Command busbar-mqtt runs busbar with only an MQTT listener, for
// mqttpeer to measure in its own process.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
)

func main() {
	port := flag.Int("port", 0, "MQTT port (0: free)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file (until SIGINT/SIGTERM)")
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
	b, err := broker.New(broker.Options{})
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
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
