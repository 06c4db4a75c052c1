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
package busbartest

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
	"github.com/busbar/busbar/websocket"
)

// Options configure a test broker. The zero value is an open broker with
// every listener.
type Options struct {
	// Broker is the base configuration (limits, store, accounts). Its
	// Authenticator is replaced when Users is set.
	Broker broker.Options
	// Users, when set, turns authentication on with these users (plain or
	// bcrypt passwords, tokens via Token, permissions, connection types).
	Users []auth.User
	// Token, when set, is accepted as an authorization token.
	Token string
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

	opts Options
}

// Start starts a broker and registers its shutdown with t.Cleanup. It
// fails the test when the broker cannot start.
func Start(t TB, o Options) *Server {
	t.Helper()
	bo := o.Broker
	if len(o.Users) > 0 || o.Token != "" {
		a, err := auth.New(auth.Options{Users: o.Users, Token: o.Token})
		if err != nil {
			t.Fatalf("busbartest: users: %v", err)
		}
		bo.Authenticator = a
	}
	b, err := broker.New(bo)
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	s := &Server{B: b, opts: o}
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
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	mt, err := mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	wt, err := websocket.New(websocket.Options{Host: "127.0.0.1", NATS: nt, MQTT: mt})
	if err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	ts := []transport.Transport{nt, mt, wt}
	svcs := make([]broker.Service, 0, len(ts))
	for _, tr := range ts {
		if err := tr.Listen(); err != nil {
			t.Fatalf("busbartest: %v", err)
		}
		svcs = append(svcs, tr)
	}
	if err := b.Start(svcs...); err != nil {
		t.Fatalf("busbartest: %v", err)
	}
	s.NATSURL = "nats://" + nt.Addr().String()
	s.MQTTURL = "tcp://" + mt.Addr().String()
	s.WSURL = "ws://" + wt.Addr().String()
	return s
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

// SetUsers replaces the users (and turns authentication on): connected
// clients are checked again, as a configuration reload does — refused
// ones are closed, the others get the new permissions.
func (s *Server) SetUsers(users ...auth.User) error {
	opts := s.B.Options()
	a, err := auth.New(auth.Options{Users: users, Token: s.opts.Token})
	if err != nil {
		return err
	}
	opts.Authenticator = a
	return s.B.Reload(opts)
}
