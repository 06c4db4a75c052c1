// Package busbartest starts a busbar broker for a host application's
// tests in one call: listeners on free loopback ports (NATS, MQTT and
// WebSocket; or none), shut down by t.Cleanup, with a connected nats.go
// client that needs no socket, the URLs for other clients, and users and
// permissions that can be changed while it runs.
//
//	func TestOrders(t *testing.T) {
//		s := busbartest.Start(t, busbartest.Options{})
//		nc := s.Conn(t)                  // nats.go, in-process
//		mqttURL := s.MQTTURL             // "tcp://127.0.0.1:PORT"
//		...
//	}
//
// The broker can come from configuration text (Options.Config: accounts,
// users, websocket { handshake {} }, mqtt {} as the busbar command reads
// them) or from the transports' own options; the host application's own
// Authenticator goes in Options.Broker.Authenticator, and test users are
// asked after it.
package busbartest

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// Options configure a test broker. The zero value is an open broker with
// every listener.
type Options struct {
	// Broker is the base configuration (limits, store, accounts, the host
	// application's Authenticator). With Config, only its Authenticator,
	// Store and Logger are used, over what the text says.
	Broker broker.Options
	// Users, when set, turns authentication on with these users (plain or
	// bcrypt passwords, permissions, connection types); Token, an
	// authorization token. They are asked after the broker's own
	// Authenticator (Broker.Authenticator or the Config's), which keeps
	// deciding what it accepts.
	Users []auth.User
	Token string

	// Config is configuration text in the busbar command's format
	// (docs/CONFIG.md): limits, accounts and authorization, and the
	// websocket {} and mqtt {} blocks (handshake authentication, origins,
	// MQTT limits). Listeners bind free loopback ports whatever it says;
	// a missing websocket {} or mqtt {} block means its defaults. Errors
	// fail the test with their line and column.
	Config string
	// NATS, MQTT and WebSocket are the transports' options when Config is
	// empty. Host and Port are replaced (loopback, a free port); the
	// WebSocket transport serves the NATS and MQTT ones'.
	NATS      natsproto.Options
	MQTT      mqtt.Options
	WebSocket websocket.Options

	// NoListeners runs the broker in-process only (Conn still works).
	NoListeners bool
}

// TB is the part of testing.TB Start needs (*testing.T, *testing.B and
// *testing.F have it).
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Server is a running test broker.
type Server struct {
	B *broker.Broker
	// URLs of the listeners ("" with NoListeners).
	NATSURL string // nats://127.0.0.1:PORT
	MQTTURL string // tcp://127.0.0.1:PORT (paho's form)
	WSURL   string // ws://127.0.0.1:PORT (NATS; MQTT at WSURL+"/mqtt")
	// WebSocket is the WebSocket transport: WebSocket.Handler(B) mounts it
	// on a test's own mux.
	WebSocket *websocket.Transport

	opts Options
	base auth.Authenticator // the broker's own, before Users
}

// Start starts a broker and registers its shutdown with t.Cleanup. It
// fails the test when the broker cannot start.
func Start(t TB, o Options) *Server {
	t.Helper()
	var cfg *config.Config
	bo := o.Broker
	if o.Config != "" {
		cfg = parseConfig(t, o.Config)
		bo = configOptions(t, cfg, o.Broker)
	}
	s := &Server{opts: o, base: bo.Authenticator}
	if len(o.Users) > 0 || o.Token != "" {
		bo.Authenticator = s.chain(t, o.Users)
	}
	b, err := broker.New(bo)
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	s.B = b
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("busbartest: shutdown: %v", err)
		}
	})
	if o.NoListeners {
		return s
	}
	nt, mt, wt := transports(t, cfg, o)
	svcs := []broker.Service{nt, mt, wt}
	if err := b.Start(svcs...); err != nil { // binds each on a free port
		t.Fatalf("busbartest: %v", err)
	}
	s.NATSURL = "nats://" + nt.Addr().String()
	s.MQTTURL = "tcp://" + mt.Addr().String()
	s.WSURL = "ws://" + wt.Addr().String()
	s.WebSocket = wt
	return s
}

func parseConfig(t TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "busbartest.conf")
	if err != nil {
		t.Fatalf("busbartest: configuration:\n%v", err)
	}
	return cfg
}

// configOptions are the broker options cfg gives, with base's
// Authenticator, Store and Logger.
func configOptions(t TB, cfg *config.Config, base broker.Options) broker.Options {
	t.Helper()
	if base.Authenticator != nil {
		builtin, err := cfg.Authenticator(base.Logger)
		if err != nil {
			t.Fatalf("busbartest: configuration:\n%v", err)
		}
		cfg.Broker.Authenticator = auth.Chain(base.Authenticator, builtin)
	}
	bo, err := cfg.BrokerOptions(base.Logger)
	if err != nil {
		t.Fatalf("busbartest: configuration:\n%v", err)
	}
	if base.Store != nil {
		bo.Store = base.Store
	}
	return bo
}

// transports builds the three listeners, on loopback and free ports: from
// cfg's blocks (defaults for a missing one), or from o.
func transports(t TB, cfg *config.Config, o Options) (*natsproto.Transport, *mqtt.Transport, *websocket.Transport) {
	t.Helper()
	if cfg != nil {
		cfg.NATS.Host, cfg.NATS.Port = "127.0.0.1", 0
		if cfg.MQTT == nil {
			cfg.MQTT = &config.MQTTOptions{}
		}
		cfg.MQTT.Host, cfg.MQTT.Port = "127.0.0.1", 0
		if cfg.WebSocket == nil {
			cfg.WebSocket = &config.WebSocketOptions{NoTLS: true}
		}
		cfg.WebSocket.Host, cfg.WebSocket.Port = "127.0.0.1", 0
		ts, err := cfg.Transports()
		if err != nil {
			t.Fatalf("busbartest: configuration:\n%v", err)
		}
		return ts[0].(*natsproto.Transport), ts[1].(*mqtt.Transport), ts[2].(*websocket.Transport)
	}
	o.NATS.Host, o.NATS.Port = "127.0.0.1", 0
	o.MQTT.Host, o.MQTT.Port = "127.0.0.1", 0
	nt, err := natsproto.New(o.NATS)
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	mt, err := mqtt.New(o.MQTT)
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	wo := o.WebSocket
	wo.Host, wo.Port, wo.NATS, wo.MQTT = "127.0.0.1", 0, nt, mt
	wt, err := websocket.New(wo)
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	return nt, mt, wt
}

// chain is the broker's own Authenticator, then users and the token.
func (s *Server) chain(t TB, users []auth.User) auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Options{Users: users, Token: s.opts.Token})
	if err != nil {
		t.Fatalf("busbartest: users: %v", err)
	}
	return auth.Chain(s.base, a)
}

// Conn returns a nats.go client connected in-process (no socket), closed
// by t.Cleanup. With users set, pass nats.UserInfo or nats.Token.
func (s *Server) Conn(t TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.InProcessServer(natsproto.InProcess(s.B)), nats.MaxReconnects(0)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		t.Fatalf("busbartest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// SetUsers replaces the users (and turns authentication on), still asked
// after the broker's own Authenticator: connected clients are checked
// again, as a configuration reload does — refused ones are closed, the
// others get the new permissions.
func (s *Server) SetUsers(users ...auth.User) error {
	opts := s.B.Options()
	a, err := auth.New(auth.Options{Users: users, Token: s.opts.Token})
	if err != nil {
		return err
	}
	opts.Authenticator = auth.Chain(s.base, a)
	return s.B.Reload(opts)
}
