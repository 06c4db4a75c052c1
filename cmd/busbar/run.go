package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/server"
)

// levelTrace is below slog.LevelDebug: protocol traces (-V, trace: true).
const levelTrace = slog.Level(-8)

// printErrors writes each positioned error on its own line.
func printErrors(w io.Writer, err error) {
	if es := config.AsErrors(err); es != nil {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}

func logLevel(l config.LogOptions) slog.Level {
	switch {
	case l.Trace:
		return levelTrace
	case l.Debug:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

func newLogger(cfg *config.Config, level *slog.LevelVar, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	w, closer := stderr, io.Closer(nil)
	if cfg.Log.File != "" {
		lf, err := os.OpenFile(cfg.Log.File, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("busbar: log file: %w", err)
		}
		w, closer = lf, lf
	}
	level.Set(logLevel(cfg.Log))
	ho := &slog.HandlerOptions{Level: level}
	if !cfg.Log.Logtime {
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho)), closer, nil
	}
	return slog.New(slog.NewTextHandler(w, ho)), closer, nil
}

// run is main without os.Exit, so tests drive it. stop, when not nil,
// replaces the signal channel (SIGHUP on it reloads).
func run(args []string, stdout, stderr io.Writer, stop <-chan os.Signal) int {
	f, err := parseFlags(args)
	if err != nil {
		fmt.Fprintln(stderr, "busbar: "+strings.TrimPrefix(err.Error(), errUsage.Error()+": ")) // one line, no usage
		return 2
	}
	if f.help {
		usage(stderr)
		return 0
	}
	if f.version {
		fmt.Fprintf(stdout, "busbar v%s (%s)\n", broker.Version, broker.GoVersion())
		return 0
	}
	if f.signal != "" {
		if err := sendSignal(f.signal); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	cfg, err := loadConfig(f)
	if err == nil && f.check {
		err = cfg.Check()
	}
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	if f.check {
		for _, w := range cfg.Warnings {
			fmt.Fprintln(stderr, w.String())
		}
		fmt.Fprintf(stdout, "busbar: configuration file %s is valid\n", f.config)
		return 0
	}
	level := new(slog.LevelVar)
	log, closer, err := newLogger(cfg, level, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if closer != nil {
		defer closer.Close()
	}
	c := &command{flags: f, log: log, level: level}
	if err := c.serve(cfg, stop); err != nil {
		if es := config.AsErrors(err); es != nil {
			for _, e := range es {
				log.Error("busbar stopped", "err", e.Error())
			}
			return 1
		}
		log.Error("busbar stopped", "err", err)
		return 1
	}
	return 0
}

// command is the running busbar: the server started from the
// configuration, and the flags that built it (a reload applies them again).
type command struct {
	flags *flags
	log   *slog.Logger
	level *slog.LevelVar
	srv   *server.Server

	mu sync.Mutex // serializes reloads
}

func (c *command) serve(cfg *config.Config, stop <-chan os.Signal) error {
	for _, w := range cfg.Warnings {
		c.log.Warn("configuration: " + w.String())
	}
	for _, n := range cfg.Notices {
		c.log.Info("configuration: " + n.Msg)
	}
	var err error
	if c.srv, err = server.Start(cfg, server.Options{Logger: c.log}); err != nil {
		return err
	}
	c.logReady()
	if stop == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR2)
		defer signal.Stop(ch)
		stop = ch
	}
	return c.waitSignals(stop)
}

// waitSignals handles signals until the broker is to stop: SIGHUP
// reloads, SIGUSR2 starts lame duck mode (which ends in a shutdown),
// SIGINT/SIGTERM shut down; during lame duck mode they close the
// remaining clients at once instead of waiting.
func (c *command) waitSignals(stop <-chan os.Signal) error {
	var (
		ldDone   chan error
		ldCancel context.CancelFunc
	)
	for {
		select {
		case err := <-ldDone:
			return err
		case sig, ok := <-stop:
			switch {
			case ok && sig == syscall.SIGHUP:
				_ = c.reload()
				continue
			case ok && sig == syscall.SIGUSR2:
				if ldDone != nil {
					c.log.Info("already in lame duck mode")
					continue
				}
				var ctx context.Context
				ctx, ldCancel = context.WithCancel(context.Background())
				defer ldCancel()
				ldDone = make(chan error, 1)
				go func() { ldDone <- c.srv.LameDuck(ctx) }()
				continue
			case ldDone != nil:
				c.log.Info("shutting down: closing the lame duck's remaining clients now", "signal", fmt.Sprint(sig))
				ldCancel()
				return <-ldDone
			}
			c.log.Info("shutting down", "signal", fmt.Sprint(sig))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return c.srv.Shutdown(ctx)
		}
	}
}

// sendSignal is --signal CMD=PID (nats-server's -sl) and --ldm PID: it
// signals a running busbar. PID is a process id or a file holding one.
func sendSignal(arg string) error {
	cmd, target, ok := strings.Cut(arg, "=")
	if !ok || target == "" {
		return fmt.Errorf("busbar: --signal %q: want CMD=PID (busbar finds no process by name; give its pid or pid file)", arg)
	}
	sigs := map[string]syscall.Signal{
		"ldm": syscall.SIGUSR2, "reload": syscall.SIGHUP, "quit": syscall.SIGINT,
		"term": syscall.SIGTERM, "stop": syscall.SIGKILL,
	}
	sig, ok := sigs[strings.ToLower(cmd)]
	if !ok {
		return fmt.Errorf("busbar: --signal: unknown command %q (ldm, reload, quit, term, stop)", cmd)
	}
	pid, err := strconv.Atoi(target)
	if err != nil {
		data, rerr := os.ReadFile(target)
		if rerr != nil {
			return fmt.Errorf("busbar: --signal %s: %q is neither a pid nor a readable pid file: %w", cmd, target, rerr)
		}
		if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil {
			return fmt.Errorf("busbar: --signal %s: pid file %s holds no pid", cmd, target)
		}
	}
	if pid <= 0 {
		return fmt.Errorf("busbar: --signal %s: invalid pid %d", cmd, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("busbar: --signal %s to pid %d: %w", cmd, pid, err)
	}
	return nil
}

// logReady says in one line what runs where.
func (c *command) logReady() {
	cfg := c.srv.Config()
	attrs := []any{"version", broker.Version}
	for _, l := range c.srv.Listeners() {
		attrs = append(attrs, l.Name, l.Addr.String())
	}
	storeKind := "memory"
	if cfg.Store.Enabled {
		storeKind = "file " + cfg.Store.Dir
	}
	attrs = append(attrs, "auth", authMode(cfg), "store", storeKind)
	if sys := c.srv.SystemAccount(); sys != nil {
		attrs = append(attrs, "system_account", sys.Account())
	}
	if cfg.File != "" {
		attrs = append(attrs, "config", cfg.File)
	}
	if cfg.Leafnodes != nil && len(cfg.Leafnodes.Remotes) > 0 {
		attrs = append(attrs, "leafnode_remotes", len(cfg.Leafnodes.Remotes))
	}
	c.log.Info("busbar ready", attrs...)
}

// reload re-reads the configuration file (SIGHUP): users, passwords,
// tokens, permissions, limits and the log level apply without a restart.
// A file with errors is refused whole and each error is logged with its
// position; the running configuration stays.
func (c *command) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flags.config == "" {
		c.log.Warn("reload: busbar runs without a configuration file (-c); nothing to reload")
		return errors.New("busbar: no configuration file")
	}
	next, err := loadConfig(c.flags)
	if err == nil {
		err = c.srv.Reload(next)
	}
	if err != nil {
		if es := config.AsErrors(err); es != nil {
			for _, e := range es {
				c.log.Error("reload failed: running configuration kept", "err", e.Error())
			}
		} else {
			c.log.Error("reload failed: running configuration kept", "err", err)
		}
		return err
	}
	c.level.Set(logLevel(next.Log))
	for _, w := range next.Warnings {
		c.log.Warn("configuration: " + w.String())
	}
	c.log.Info("reloaded", "config", c.flags.config, "auth", authMode(next))
	return nil
}

func authMode(cfg *config.Config) string {
	a := &cfg.Auth
	switch {
	case len(a.Operators) > 0:
		return "operator"
	case a.Token != "" && len(a.Users) > 0:
		return "token, users"
	case a.Token != "":
		return "token"
	case len(a.Users) == 1 && a.Users[0].Password != "" && a.Users[0].NKey == "":
		return "user/password"
	case len(a.Users) > 0:
		return fmt.Sprintf("%d users", len(a.Users))
	case a.ExternalJWT != nil:
		return "jwt"
	}
	return "none"
}
