package matrix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/store/filestore"
)

// wait bounds every wait on a condition: generous, for a busy 2-core CI
// machine under -race.
const wait = 10 * time.Second

// Permissions shared by the configurations. Subjects of the matrix are
// PATH.TRANSPORT.CLASS.N; the class says what the message is to whom:
// open (anyone may), secret (subscribe-denied to sub, asub and, after the
// reload, rl), nopub (not in pub's allow list), open.deny (in pub's deny
// list), iso (account A's own), shared (exported by A to B), svc (A's
// service, imported by B), noimp/noexp (the leaf's deny_imports and
// deny_exports).
const (
	pubPerms = `{publish: {allow: ["*.*.open.>", "*.*.secret.>", "*.*.shared.>", "*.*.iso.>", "*.*.svc.>", "mark.>"], deny: ["*.*.open.deny"]}}`
	subPerms = `{subscribe: {allow: [">"], deny: ["*.*.secret.>"]}}`
	// rl after the reload: secret may no longer be published or received.
	rlPerms = `{publish: {allow: [">"], deny: ["*.*.secret.>"]}, subscribe: {allow: [">"], deny: ["*.*.secret.>"]}}`
)

// confOpts select the variants of the one configuration text.
type confOpts struct {
	reloaded bool   // the second version: rl restricted, mover in account B
	storeDir string // jetstream { store_dir }; "" for the in-memory store
	leafURL  string // a leafnodes remote bound to account A; "" for none
}

// confText is the broker configuration: listeners on free ports, global
// users, accounts A and B with a stream and a service export from A
// imported by B.
func confText(o confOpts) string {
	rl, moverA, moverB := `{user: rl, password: rl-pw}`, `{user: mover, password: mover-pw}`, ""
	if o.reloaded {
		rl = `{user: rl, password: rl-pw, permissions: ` + rlPerms + `}`
		moverA, moverB = "", `{user: mover, password: mover-pw}`
	}
	var b strings.Builder
	fmt.Fprintf(&b, `
port: -1
mqtt { port: -1 }
websocket { port: -1, no_tls: true }
authorization {
  timeout: "30s" # a loaded CI machine with two dozen cells at once under -race
  users: [
    {user: all, password: all-pw}
    {user: pub, password: pub-pw, permissions: %s}
    {user: sub, password: sub-pw, permissions: %s}
    %s
  ]
}
accounts {
  A {
    users: [
      {user: a, password: a-pw}
      {user: asub, password: asub-pw, permissions: %s}
      {user: apub, password: apub-pw, permissions: %s}
      %s
    ]
    exports: [
      {stream: "*.*.shared.>"}
      {service: "*.*.svc.>"}
    ]
  }
  B {
    users: [
      {user: b, password: b-pw}
      {user: bsub, password: bsub-pw, permissions: {subscribe: {allow: [">"], deny: ["*.*.shared.hidden"]}}}
      %s
    ]
    imports: [
      {stream: {account: A, subject: "*.*.shared.>"}}
      {service: {account: A, subject: "*.*.svc.>"}}
    ]
  }
}
`, pubPerms, subPerms, rl, subPerms, pubPerms, moverA, moverB)
	if o.storeDir != "" {
		fmt.Fprintf(&b, "jetstream { store_dir: %q }\n", o.storeDir)
	}
	if o.leafURL != "" {
		fmt.Fprintf(&b, `leafnodes {
  reconnect: "100ms"
  remotes: [{url: %q, account: A, deny_imports: ["*.*.noimp.>"], deny_exports: ["*.*.noexp.>"]}]
}
`, o.leafURL)
	}
	return b.String()
}

// server is a broker built from configuration text as cmd/busbar builds
// it: config.Parse → BrokerOptions → OpenStore → broker.New → Transports →
// Listen → Start (and the leafnodes service).
type server struct {
	mu      sync.Mutex
	text    string // the configuration the broker runs
	cfg     *config.Config
	b       *broker.Broker
	st      *filestore.Store
	natsURL string // nats://
	wsURL   string // ws:// (NATS; MQTT on /mqtt)
	mqttURL string // tcp://
	mqttHP  string // host:port of the MQTT listener
	wsHP    string // host:port of the WebSocket listener
}

// startServer starts a broker from text, shut down when the test ends.
func startServer(t *testing.T, text string) *server {
	t.Helper()
	s := &server{}
	if err := s.start(text); err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("shut down broker: %v", err)
		}
	})
	return s
}

func (s *server) start(text string) error {
	cfg, err := config.Parse([]byte(text), "matrix.conf")
	if err != nil {
		return err
	}
	opts, err := cfg.BrokerOptions(nil)
	if err != nil {
		return err
	}
	st, err := cfg.OpenStore(nil)
	if err != nil {
		return err
	}
	if st != nil {
		opts.Store = st
	}
	b, err := broker.New(opts)
	if err != nil {
		return closeStore(st, err)
	}
	ts, err := cfg.Transports()
	if err != nil {
		return closeStore(st, err)
	}
	svcs := make([]broker.Service, 0, len(ts)+1)
	var natsURL, wsURL, mqttHP, wsHP string
	for _, tr := range ts {
		if err := tr.Listen(); err != nil {
			for _, sv := range svcs {
				_ = sv.Close()
			}
			return closeStore(st, err)
		}
		svcs = append(svcs, tr)
		switch tr.Name() {
		case "nats":
			natsURL = "nats://" + tr.Addr().String()
		case "mqtt":
			mqttHP = tr.Addr().String()
		case "websocket":
			wsHP = tr.Addr().String()
			wsURL = "ws://" + wsHP
		}
	}
	leaf, err := cfg.LeafnodeService(nil)
	if err != nil {
		return closeStore(st, err)
	}
	if leaf != nil {
		svcs = append(svcs, leaf)
	}
	if err := b.Start(svcs...); err != nil {
		return closeStore(st, err)
	}
	s.mu.Lock()
	s.text, s.cfg, s.b, s.st = text, cfg, b, st
	s.natsURL, s.wsURL, s.mqttHP, s.wsHP = natsURL, wsURL, mqttHP, wsHP
	s.mqttURL = "tcp://" + mqttHP
	s.mu.Unlock()
	return nil
}

func closeStore(st *filestore.Store, err error) error {
	if st != nil {
		_ = st.Close()
	}
	return err
}

// stop shuts the broker down and closes its store; a second call does
// nothing.
func (s *server) stop() error {
	s.mu.Lock()
	b, st := s.b, s.st
	s.b, s.st = nil, nil
	s.mu.Unlock()
	if b == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	err := b.Shutdown(ctx)
	if errors.Is(err, broker.ErrClosed) {
		err = nil
	}
	if st != nil {
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// restart stops the broker and starts it again from the same text (the
// same store_dir); the listeners get new ports.
func (s *server) restart(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	text := s.text
	s.mu.Unlock()
	if err := s.stop(); err != nil {
		t.Fatalf("restart: shut down: %v", err)
	}
	if err := s.start(text); err != nil {
		t.Fatalf("restart: start: %v", err)
	}
}

// reload applies text to the running broker as SIGHUP does.
func (s *server) reload(t *testing.T, text string) {
	t.Helper()
	next, err := config.Parse([]byte(text), "matrix.conf")
	if err != nil {
		t.Fatalf("reload: parse: %v", err)
	}
	s.mu.Lock()
	cur, b := s.cfg, s.b
	s.mu.Unlock()
	if err := config.Reload(b, cur, next, nil); err != nil {
		t.Fatalf("reload: %v", err)
	}
	s.mu.Lock()
	s.text, s.cfg = text, next
	s.mu.Unlock()
}
