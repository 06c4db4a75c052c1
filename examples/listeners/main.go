// Command listeners is a host application that runs every busbar transport
// inside its own process, on one broker: NATS over TCP, MQTT, a WebSocket
// listener, and the same WebSocket transport as an http.Handler at /ws on
// the application's own http.ServeMux, next to the application's routes
// and the monitoring endpoints under /monitor/. A message published on any
// of them reaches subscribers on all the others, and the application's
// own in-process subscriber.
//
//	go run ./examples/listeners
//	nats sub 'sensors.>'                                 # NATS, 127.0.0.1:4222
//	nats sub -s ws://127.0.0.1:8000/ws 'sensors.>'       # NATS over the app's /ws
//	                                                     # (MQTT over ws://127.0.0.1:8000/ws/mqtt)
//	mosquitto_pub -p 1883 -t sensors/t1 -m 21.5 -q 1     # MQTT, 127.0.0.1:1883
//	curl 127.0.0.1:8000/latest                           # the app's own route
//	curl 127.0.0.1:8000/monitor/varz                     # monitoring, same mux
//
// Ctrl-C (or SIGTERM) shuts it down gracefully: the HTTP server stops,
// then the broker stops accepting, closes every client after flushing
// what it queued, and closes its store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// Config says where each listener binds. Port 0 picks a free port.
type Config struct {
	Host                                 string
	NATSPort, MQTTPort, WSPort, HTTPPort int
}

// App is the host application: its HTTP server and routes, with busbar
// inside.
type App struct {
	Broker *broker.Broker
	NATS   *natsproto.Transport
	MQTT   *mqtt.Transport
	WS     *websocket.Transport // its own listener, and the handler at /ws
	HTTP   *http.Server
	HTTPLn net.Listener

	mu     sync.Mutex
	latest string // the last sensor reading, kept by an in-process subscriber
}

// Start builds the broker and its transports, binds every port, and
// serves.
func Start(c Config) (*App, error) {
	b, err := broker.New(broker.Options{}) // nats-server's defaults, in-memory store
	if err != nil {
		return nil, err
	}
	a, err := start(b, c)
	if err != nil {
		_ = b.Shutdown(context.Background())
		return nil, err
	}
	return a, nil
}

func start(b *broker.Broker, c Config) (*App, error) {
	nt, err := natsproto.New(natsproto.Options{Host: c.Host, Port: c.NATSPort})
	if err != nil {
		return nil, err
	}
	mt, err := mqtt.New(mqtt.Options{Host: c.Host, Port: c.MQTTPort})
	if err != nil {
		return nil, err
	}
	// NATS and MQTT: the WebSocket connections use the same protocol
	// settings as the TCP listeners.
	wt, err := websocket.New(websocket.Options{Host: c.Host, Port: c.WSPort, NATS: nt, MQTT: mt})
	if err != nil {
		return nil, err
	}
	// Bind first, so "address already in use" is reported before anything runs.
	for _, l := range []interface{ Listen() error }{nt, mt, wt} {
		if err := l.Listen(); err != nil {
			return nil, err
		}
	}
	if err := b.Start(nt, mt, wt); err != nil {
		return nil, err
	}
	a := &App{Broker: b, NATS: nt, MQTT: mt, WS: wt}

	// The application's own subscriber: in process, no socket. MQTT's
	// sensors/t1 is the subject sensors.t1.
	l, err := b.Local("app")
	if err != nil {
		return nil, err
	}
	_, err = l.SubscribeInline("sensors.>", func(m *broker.Message) {
		a.mu.Lock()
		a.latest = fmt.Sprintf("%s %s", m.Subject, m.Payload) // copies: m is valid only during the call
		a.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /latest", a.serveLatest)
	// WebSocket on the app's own port: NATS (nats.ws, nats.go ws://) at
	// /ws, MQTT at /ws/mqtt (or at /ws with the subprotocol mqtt, as
	// MQTT.js and paho ask). A mux pattern is exact: /ws alone would
	// answer /ws/mqtt with 404.
	ws := wt.Handler(b)
	mux.Handle("/ws", ws)
	mux.Handle("/ws/mqtt", ws)
	mux.Handle("/monitor/", http.StripPrefix("/monitor", monitor.New(b, monitor.Options{})))

	a.HTTPLn, err = net.Listen("tcp", net.JoinHostPort(c.Host, strconv.Itoa(c.HTTPPort)))
	if err != nil {
		return nil, fmt.Errorf("listeners: http: %w", err)
	}
	a.HTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.HTTP.Serve(a.HTTPLn) }() // ErrServerClosed after Shutdown
	return a, nil
}

func (a *App) serveLatest(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _ = fmt.Fprintln(w, a.latest)
}

// Shutdown stops the HTTP server (WebSocket connections upgraded through
// it belong to the broker), then the broker.
func (a *App) Shutdown(ctx context.Context) error {
	return errors.Join(a.HTTP.Shutdown(ctx), a.Broker.Shutdown(ctx))
}

func main() {
	c := Config{}
	flag.StringVar(&c.Host, "host", "127.0.0.1", "`HOST` every listener binds")
	flag.IntVar(&c.NATSPort, "nats", 4222, "NATS `PORT`")
	flag.IntVar(&c.MQTTPort, "mqtt", 1883, "MQTT `PORT`")
	flag.IntVar(&c.WSPort, "ws", 8080, "WebSocket listener `PORT`")
	flag.IntVar(&c.HTTPPort, "http", 8000, "the application's HTTP `PORT` (/latest, /ws, /monitor/)")
	flag.Parse()

	a, err := Start(c)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("nats://%s mqtt://%s ws://%s http://%s\n", a.NATS.Addr(), a.MQTT.Addr(), a.WS.Addr(), a.HTTPLn.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
}
