// Command hostapp is a host application that runs busbar from a
// configuration file with one call (server.Start), exactly as the busbar
// command would: every listener and block the file names, monitoring,
// the durable store. The application adds its own Authenticator in front
// of the file's users, and mounts the WebSocket handler and monitoring
// on its own HTTP mux beside its routes.
//
//	go run ./examples/hostapp -c examples/hostapp/testdata/app.conf
//	nats -s nats://127.0.0.1:4222 --user ops --password ops-pw sub 'sensors.>'
//	nats -s ws://127.0.0.1:8000/ws --token app-ann pub sensors.t1 21.5
//	curl 127.0.0.1:8000/monitor/varz
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/server"
)

// appAuth accepts the application's own session tokens ("app-<user>").
func appAuth(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	if user, ok := strings.CutPrefix(c.Token, "app-"); ok && user != "" {
		return &auth.Identity{Name: user}, true, nil
	}
	return nil, false, nil
}

// App is the host application: its HTTP server, with busbar inside.
type App struct {
	Busbar *server.Server
	HTTP   *http.Server
	Ln     net.Listener
}

// Start runs busbar from the configuration file and the application's
// HTTP server on addr.
func Start(file, addr string, logger *slog.Logger) (*App, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	bb, err := server.Start(cfg, server.Options{Logger: logger, Authenticator: auth.AuthenticatorFunc(appAuth)})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	ws := bb.WebSocketHandler()
	mux.Handle("/ws", ws)
	mux.Handle("/ws/mqtt", ws)
	mux.Handle("/monitor/", http.StripPrefix("/monitor", bb.Monitor()))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello\n")) })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = bb.Shutdown(context.Background())
		return nil, err
	}
	a := &App{Busbar: bb, HTTP: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, Ln: ln}
	go func() { _ = a.HTTP.Serve(ln) }() // ErrServerClosed after Shutdown
	return a, nil
}

// Shutdown stops the HTTP server, then busbar (which closes its store).
func (a *App) Shutdown(ctx context.Context) error {
	return errors.Join(a.HTTP.Shutdown(ctx), a.Busbar.Shutdown(ctx))
}

func main() {
	file := flag.String("c", "busbar.conf", "configuration `FILE`")
	addr := flag.String("http", "127.0.0.1:8000", "the application's HTTP `ADDRESS`")
	flag.Parse()
	a, err := Start(*file, *addr, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
}
