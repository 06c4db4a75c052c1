package config_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/transport"
)

// probeOpts is what the `probe {}` block of these tests decodes to.
type probeOpts struct {
	Host    string
	Port    int
	Greet   string
	Every   time.Duration
	Tags    []string
	TLS     *transport.TLSOptions
	NATSSet bool // the NATS listener's host was read before the block
}

// probe is a transport a host registers: it only binds a TCP port.
type probe struct {
	transport.Listener
	opts probeOpts
	env  []string // names of the transports built before it
}

func (p *probe) Name() string { return "probe" }

func (p *probe) Serve(ctx context.Context, b *broker.Broker) error {
	return p.Accept(ctx, b.Go, func(c net.Conn) { _ = c.Close() })
}

var errProbe = errors.New("probe: refused")

func init() {
	config.RegisterTransport(config.TransportBlock{
		Name: "probe", Aliases: []string{"probe_listener"},
		Decode: func(b *config.Block) (any, error) {
			o := probeOpts{Greet: "hello", NATSSet: b.Config().NATS.Host != config.DefaultHost}
			b.Fields(map[string]config.Field{
				"listen": b.HostPort(&o.Host, &o.Port),
				"port":   b.Port(&o.Port),
				"greet":  b.String(&o.Greet),
				"every":  b.Duration(&o.Every),
				"tags":   b.Strings(&o.Tags),
				"tls":    b.TLS(&o.TLS),
			})
			if o.Greet == "" {
				return nil, fmt.Errorf("greet must not be empty")
			}
			return &o, nil
		},
		New: func(opts any, env *config.Env) (transport.Transport, error) {
			o := opts.(*probeOpts)
			if o.Greet == "refuse" {
				return nil, errProbe
			}
			p := &probe{opts: *o}
			for _, n := range []string{"nats", "mqtt", "websocket"} {
				if env.Transport(n) != nil {
					p.env = append(p.env, n)
				}
			}
			if _, err := p.Setup("probe", o.Host, o.Port, o.TLS); err != nil {
				return nil, err
			}
			return p, nil
		},
	})
}

// TestRegisteredBlockIsReadAndBuilt: a host's block is read with its own
// keys (an alias too), kept in Config.Blocks, and built after the
// built-in listeners, which it can find.
func TestRegisteredBlockIsReadAndBuilt(t *testing.T) {
	require.Equal(t, []string{"nats", "mqtt", "websocket", "probe"}, config.RegisteredTransports())
	cfg, err := config.Parse([]byte(`
host: 127.0.0.2
mqtt { port: -1 }
PROBE_LISTENER {
  listen: "127.0.0.1:-1"
  greet: hi
  every: 2s
  tags: [a, b]
}
`), "probe.conf")
	require.NoError(t, err)
	o := cfg.Blocks["probe"].(*probeOpts)
	require.Equal(t, probeOpts{Host: "127.0.0.1", Port: -1, Greet: "hi", Every: 2 * time.Second, Tags: []string{"a", "b"}, NATSSet: true}, *o)
	pos, ok := cfg.KeyPos("probe.greet")
	require.True(t, ok)
	require.Equal(t, "probe.conf:6:3", pos.String())

	ts, err := cfg.Transports()
	require.NoError(t, err)
	var names []string
	for _, tr := range ts {
		names = append(names, tr.Name())
	}
	require.Equal(t, []string{"nats", "mqtt", "probe"}, names)
	require.Equal(t, []string{"nats", "mqtt"}, ts[2].(*probe).env)

	// Without the block, nothing is built for it.
	cfg, err = config.Parse([]byte("port: -1"), "none.conf")
	require.NoError(t, err)
	require.Nil(t, cfg.Blocks)
	ts, err = cfg.Transports()
	require.NoError(t, err)
	require.Len(t, ts, 1)
}

// TestRegisteredBlockServes: the built transport is started and stopped by
// the broker like the built-in ones.
func TestRegisteredBlockServes(t *testing.T) {
	cfg, err := config.Parse([]byte("port: -1\nprobe { port: -1 }\n"), "serve.conf")
	require.NoError(t, err)
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	ts, err := cfg.Transports()
	require.NoError(t, err)
	for _, tr := range ts {
		require.NoError(t, tr.Listen())
		require.NoError(t, b.Start(tr))
	}
	c, err := net.Dial("tcp", ts[1].Addr().String())
	require.NoError(t, err)
	_ = c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, b.Shutdown(ctx))
}

// TestRegisteredBlockErrors: every problem in a host's block is reported
// with its position, as for a built-in block, and an unregistered block
// is still an unknown key.
func TestRegisteredBlockErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "probe {\n  greet: x\n  colour: red\n}\n", []string{`e.conf:3:3: unknown key "colour" in probe`}},
		{"wrong type", "probe { every: forever, port: 70000 }\n", []string{
			`e.conf:1:16: every: "forever" is not a duration (examples: "2s", "1m", "1h")`,
			`e.conf:1:31: port: 70000 is out of range (-1..65535)`,
		}},
		{"not a block", "probe: 5\n", []string{`e.conf:1:8: probe: expected a {} block, got integer 5`}},
		{"decode error", "probe { greet: \"\" }\n", []string{`e.conf:1:7: probe: greet must not be empty`}},
		{"tls without files", "probe { tls { verify: true } }\n", []string{
			`e.conf:1:13: probe.tls: cert_file is required`,
			`e.conf:1:13: probe.tls: key_file is required`,
		}},
		{"unregistered", "port: 4222\nunix { path: /tmp/x }\n", []string{`e.conf:2:1: unknown key "unix"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.text), "e.conf")
			require.Error(t, err)
			var got []string
			for _, e := range config.AsErrors(err) {
				got = append(got, e.Error())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// TestRegisteredBlockBuildErrors: what New returns is positioned at the
// block and keeps its chain (errors.Is), a certificate that does not load
// too.
func TestRegisteredBlockBuildErrors(t *testing.T) {
	cfg, err := config.Parse([]byte("port: -1\n\n  probe { greet: refuse }\n"), "b.conf")
	require.NoError(t, err)
	_, err = cfg.Transports()
	require.EqualError(t, err, "b.conf:3:3: probe: refused")
	require.ErrorIs(t, err, errProbe)

	cfg, err = config.Parse([]byte("probe { tls { cert_file: /no/cert.pem, key_file: /no/key.pem } }\n"), "b.conf")
	require.NoError(t, err)
	_, err = cfg.Transports()
	require.ErrorIs(t, err, transport.ErrTLSConfig)
	require.True(t, strings.HasPrefix(err.Error(), "b.conf:1:1: "), err.Error())
	require.Contains(t, err.Error(), "/no/cert.pem")
}

// TestRegisterTransportRefusesClashes: a name or alias taken by another
// registration or by a top-level key, or a registration without Decode or
// New, panics at init, as a duplicate module does in caddy.
func TestRegisterTransportRefusesClashes(t *testing.T) {
	newT := func(opts any, env *config.Env) (transport.Transport, error) { return nil, nil }
	dec := func(b *config.Block) (any, error) { return nil, nil }
	for _, tc := range []struct {
		name string
		tb   config.TransportBlock
		want string
	}{
		{"duplicate", config.TransportBlock{Name: "Probe", Decode: dec, New: newT}, `config: RegisterTransport "Probe": "probe" is already registered`},
		{"built-in alias", config.TransportBlock{Name: "x1", Aliases: []string{"ws"}, Decode: dec, New: newT}, `config: RegisterTransport "x1": "ws" is already registered`},
		{"built-in nats", config.TransportBlock{Name: "nats", Decode: dec, New: newT}, `config: RegisterTransport "nats": "nats" is already registered`},
		{"top-level key", config.TransportBlock{Name: "x2", Aliases: []string{"port"}, Decode: dec, New: newT}, `config: RegisterTransport "x2": "port" is a top-level key of the configuration`},
		{"ignored top-level key", config.TransportBlock{Name: "cluster", Decode: dec, New: newT}, `config: RegisterTransport "cluster": "cluster" is a top-level key of the configuration`},
		{"alias twice", config.TransportBlock{Name: "x3", Aliases: []string{"X3"}, Decode: dec, New: newT}, `config: RegisterTransport "x3": "x3" is already registered`},
		{"empty", config.TransportBlock{Decode: dec, New: newT}, `config: RegisterTransport "": empty name or alias`},
		{"no decode", config.TransportBlock{Name: "x4", New: newT}, `config: RegisterTransport "x4": Decode and New are required`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.PanicsWithValue(t, tc.want, func() { config.RegisterTransport(tc.tb) })
		})
	}
	require.Equal(t, []string{"nats", "mqtt", "websocket", "probe"}, config.RegisteredTransports())
}

// TestReloadRefusesChangedRegisteredBlock: a host's listener cannot change
// live, as the built-in ones cannot.
func TestReloadRefusesChangedRegisteredBlock(t *testing.T) {
	cur, err := config.Parse([]byte("probe { port: 7001 }\n"), "r.conf")
	require.NoError(t, err)
	same, err := config.Parse([]byte("max_payload: 2MB\nprobe { port: 7001 }\n"), "r.conf")
	require.NoError(t, err)
	require.NoError(t, cur.CheckReload(same))
	next, err := config.Parse([]byte("max_payload: 2MB\nprobe { port: 7002 }\n"), "r.conf")
	require.NoError(t, err)
	require.EqualError(t, cur.CheckReload(next), "r.conf:2:1: probe: cannot be changed by a reload (restart busbar); the running configuration is kept")
}
