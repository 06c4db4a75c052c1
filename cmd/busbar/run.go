package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// flags are nats-server's command-line options that busbar implements.
type flags struct {
	host, user, pass, token, logFile, config string
	port, httpPort                           int
	debug, trace, debugTrace, version, check bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("busbar", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.host, "a", "127.0.0.1", "bind to `HOST` (alias --addr, --net)")
	fs.StringVar(&f.host, "addr", "127.0.0.1", "bind to `HOST`")
	fs.StringVar(&f.host, "net", "127.0.0.1", "bind to `HOST`")
	fs.IntVar(&f.port, "p", 4222, "NATS client `PORT` (alias --port)")
	fs.IntVar(&f.port, "port", 4222, "NATS client `PORT`")
	fs.IntVar(&f.httpPort, "m", 8222, "monitoring `PORT` (alias --http_port)")
	fs.IntVar(&f.httpPort, "http_port", 8222, "monitoring `PORT`")
	fs.StringVar(&f.user, "user", "", "`USER` required for connections")
	fs.StringVar(&f.pass, "pass", "", "`PASSWORD` required for connections")
	fs.StringVar(&f.token, "auth", "", "authorization `TOKEN` required for connections")
	fs.BoolVar(&f.debug, "D", false, "debug logging")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.BoolVar(&f.trace, "V", false, "trace logging")
	fs.BoolVar(&f.trace, "trace", false, "trace logging")
	fs.BoolVar(&f.debugTrace, "DV", false, "debug and trace logging")
	fs.StringVar(&f.logFile, "l", "", "log to `FILE` instead of stderr (alias --log)")
	fs.StringVar(&f.logFile, "log", "", "log to `FILE`")
	fs.StringVar(&f.config, "c", "", "configuration `FILE` (alias --config)")
	fs.StringVar(&f.config, "config", "", "configuration `FILE`")
	fs.BoolVar(&f.check, "t", false, "check the configuration file and exit")
	fs.BoolVar(&f.version, "v", false, "print the version and exit (alias --version)")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: busbar [options]\n\nWith no options busbar runs the embedded default: NATS on 127.0.0.1:4222,\nno authentication, in-memory store.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("busbar: unexpected argument %q (see busbar -h)", fs.Arg(0))
	}
	if f.debugTrace {
		f.debug, f.trace = true, true
	}
	return f, nil
}

// levelTrace is below slog.LevelDebug: protocol traces (-V).
const levelTrace = slog.Level(-8)

func newLogger(f *flags, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	w, closer := stderr, io.Closer(nil)
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("busbar: log file: %w", err)
		}
		w, closer = lf, lf
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	if f.trace {
		level = levelTrace
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closer, nil
}

// run is main without os.Exit, so tests drive it. stop, when not nil,
// replaces the signal channel.
func run(args []string, stdout, stderr io.Writer, stop <-chan os.Signal) int {
	f, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if f.version {
		fmt.Fprintf(stdout, "busbar v%s (%s)\n", broker.Version, broker.GoVersion())
		return 0
	}
	if f.config != "" || f.check {
		fmt.Fprintln(stderr, "busbar: configuration files (-c, -t) are not supported yet")
		return 1
	}
	log, closer, err := newLogger(f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if closer != nil {
		defer closer.Close()
	}
	if err := serve(f, log, stop); err != nil {
		log.Error("busbar stopped", "err", err)
		return 1
	}
	return 0
}

func serve(f *flags, log *slog.Logger, stop <-chan os.Signal) error {
	opts := broker.Options{Logger: log}
	switch {
	case f.token != "":
		opts.Authenticator = auth.Token(f.token)
	case f.user != "":
		opts.Authenticator = auth.UserPassword(f.user, f.pass)
	}
	b, err := broker.New(opts)
	if err != nil {
		return err
	}
	nt, err := natsproto.New(natsproto.Options{Host: f.host, Port: f.port})
	if err != nil {
		return err
	}
	if err := nt.Listen(); err != nil {
		return err
	}
	if err := b.Start(nt); err != nil {
		return err
	}
	log.Info("busbar ready", "version", broker.Version, "nats", nt.Addr().String(),
		"auth", authMode(f), "store", "memory",
		"not_yet", "mqtt 127.0.0.1:1883, websocket 127.0.0.1:8080, monitoring 127.0.0.1:"+strconv.Itoa(f.httpPort))
	if stop == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(ch)
		stop = ch
	}
	sig := <-stop
	log.Info("shutting down", "signal", fmt.Sprint(sig))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return b.Shutdown(ctx)
}

func authMode(f *flags) string {
	switch {
	case f.token != "":
		return "token"
	case f.user != "":
		return "user/password"
	}
	return "none"
}
