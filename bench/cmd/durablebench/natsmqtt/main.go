// Command natsmqtt runs nats-server (github.com/nats-io/nats-server/v2,
// embedded) with JetStream on a file store in -store-dir and its MQTT
// listener on -port, for durablebench to measure in its own process. QoS 1
// messages of nats-server's MQTT are stored in JetStream (stream
// $MQTT_msgs, file storage) before the PUBACK.
//
// Durability is nats-server's jetstream sync_interval: by default 2 min
// (the file store writes each message to its block file, i.e. to the
// page cache, and fsyncs in the background every 2 min); -sync always
// sets SyncAlways, the config file's `sync_interval: always`: the block
// file is fsynced after every write, before JetStream acknowledges it.
//
// It prints "LISTEN host:port" (the MQTT listener) when ready and exits
// on SIGINT/SIGTERM or, with -stdin, when stdin closes.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/busbar/busbar/bench/internal/runenv"
	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	host := flag.String("host", "127.0.0.1", "bind `HOST`")
	port := flag.Int("port", 1883, "MQTT `PORT`")
	storeDir := flag.String("store-dir", "", "JetStream store `DIR` (required)")
	sync := flag.String("sync", "", "JetStream sync_interval: a duration, \"always\", or empty for nats-server's default (2m)")
	watchStdin := flag.Bool("stdin", false, "exit when stdin closes")
	version := flag.Bool("version", false, "print nats-server's version and exit")
	flag.Parse()
	if *version {
		fmt.Println("nats-server", server.VERSION)
		return
	}
	if *storeDir == "" {
		fatal(fmt.Errorf("-store-dir is required"))
	}
	opts := &server.Options{
		ServerName: "durablebench",
		Host:       *host,
		Port:       server.RANDOM_PORT, // the NATS listener: unused
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   *storeDir,
		MQTT:       server.MQTTOpts{Host: *host, Port: *port},
	}
	switch *sync {
	case "":
	case "always":
		opts.SyncAlways = true
	default:
		d, err := time.ParseDuration(*sync)
		if err != nil {
			fatal(err)
		}
		opts.SyncInterval = d
	}
	s, err := server.NewServer(opts)
	if err != nil {
		fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		fatal(fmt.Errorf("not ready for connections after 20s"))
	}
	fmt.Printf("LISTEN %s\n", net.JoinHostPort(*host, strconv.Itoa(*port)))

	runenv.WaitForStop(*watchStdin)
	s.Shutdown()
	s.WaitForShutdown()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "natsmqtt:", err)
	os.Exit(1)
}
