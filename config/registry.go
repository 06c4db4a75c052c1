package config

import (
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/busbar/busbar/transport"
)

// TransportBlock registers a transport configured by a top-level block of
// the file: the block's name, how to read it, how to build the transport
// from what was read. The built-in ones (the NATS listener, `mqtt {}`,
// `websocket {}`) are registered by this package; a host registers its
// own from its package's init with RegisterTransport, and then the block
// is read, checked and built like theirs:
//
//	func init() {
//		config.RegisterTransport(config.TransportBlock{Name: "unix", Decode: decodeUnix, New: newUnix})
//	}
type TransportBlock struct {
	// Name is the block's key ("unix") and the key of its options in
	// Config.Blocks; Aliases are other spellings of the key. Keys are
	// case-insensitive, as every key of the file.
	Name    string
	Aliases []string
	// Decode reads the block into the transport's options and returns
	// them. It reports each problem on b, at its position (b.Errorf; the
	// readers of Block do it for a wrong value), and goes on, so one
	// parse lists every problem; a returned error is reported at the
	// block. It runs while the file is read, once per block present.
	Decode func(b *Block) (any, error)
	// New builds the transport, not listening yet, from what Decode
	// returned (or what the host put in Config.Blocks since). env holds
	// the rest of the configuration and the transports built before this
	// one. Load certificates here, so a bad one is reported before any
	// listener binds. An error is reported at the block's position.
	New func(opts any, env *Env) (transport.Transport, error)

	// Built-in transports only: their options live in typed Config
	// fields (opts/store), the NATS one has no block of its own (its
	// keys are top-level: topLevel), and build errors point at errKey.
	opts     func(c *Config) (any, bool)
	store    func(c *Config, v any)
	topLevel bool
	errKey   string
}

// Env is what a transport's New gets beside its own options.
type Env struct {
	// Config is the whole configuration, as the host may have changed it
	// after Load: Broker holds the limits, Auth the authentication, NATS
	// the main listener (its tls {}; Nonce: the authentication needs a
	// nonce in INFO). Read it; do not change it. Connections are
	// authenticated by the broker when they present credentials
	// (broker.Authenticate), so the host's own Authenticator applies to a
	// registered transport as to the built-in ones.
	Config *Config

	built []transport.Transport
}

// Transport returns the transport named name ("nats", "mqtt") among those
// built before the one being built (the built-in ones come first), or nil.
// The websocket transport finds the NATS and MQTT ones it hands
// connections to this way.
func (e *Env) Transport(name string) transport.Transport {
	for _, t := range e.built {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// The registry holds only how to read and build transports, never a
// running one, so two brokers built from two files do not share state.
var (
	regMu      sync.RWMutex
	registered []*TransportBlock
	regKeys    = map[string]*TransportBlock{} // name and aliases, lower case
)

// RegisterTransport makes a transport block known to every later Load and
// Parse. Call it from an init function. It panics when the name or an
// alias is empty, taken by another registration or by a top-level key
// (a programming error, reported at start as caddy reports a duplicate
// module), or when Decode or New is nil.
func RegisterTransport(t TransportBlock) {
	if t.Decode == nil && !t.topLevel || t.New == nil {
		panic(fmt.Sprintf("config: RegisterTransport %q: Decode and New are required", t.Name))
	}
	regMu.Lock()
	defer regMu.Unlock()
	keys := append([]string{t.Name}, t.Aliases...)
	top := topLevelKeys()
	seen := map[string]bool{}
	for i, k := range keys {
		k = strings.ToLower(k)
		keys[i] = k
		switch {
		case k == "":
			panic(fmt.Sprintf("config: RegisterTransport %q: empty name or alias", t.Name))
		case regKeys[k] != nil || seen[k]:
			panic(fmt.Sprintf("config: RegisterTransport %q: %q is already registered", t.Name, k))
		case top[k] && !t.topLevel:
			panic(fmt.Sprintf("config: RegisterTransport %q: %q is a top-level key of the configuration", t.Name, k))
		}
		seen[k] = true
	}
	reg := t
	registered = append(registered, &reg)
	for _, k := range keys {
		regKeys[k] = &reg
	}
}

// RegisteredTransports lists the registered transports' names in the
// order their transports are built: "nats", "mqtt", "websocket", then
// the host's in the order they registered.
func RegisteredTransports() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, len(registered))
	for i, t := range registered {
		names[i] = t.Name
	}
	return names
}

// transportBlocks is a snapshot of the registry, in registration order.
func transportBlocks() []*TransportBlock {
	regMu.RLock()
	defer regMu.RUnlock()
	return append([]*TransportBlock(nil), registered...)
}

// topLevelKeys are the keys the top-level table has without the
// transport blocks (their handlers are not run).
func topLevelKeys() map[string]bool {
	d := &dec{pos: map[string]Pos{}}
	keys := map[string]bool{}
	for k := range d.topFields(&Config{}, &topState{}) {
		keys[k] = true
	}
	for _, k := range ignoredTop {
		keys[k] = true
	}
	return keys
}

// addTransportFields adds a handler for each registered block, under its
// name and aliases, to the top-level table.
func (d *dec) addTransportFields(f map[string]field, c *Config) {
	for _, t := range transportBlocks() {
		if t.topLevel {
			continue
		}
		h := func(e *Entry) { d.transportBlock(t, e, c) }
		f[strings.ToLower(t.Name)] = h
		for _, a := range t.Aliases {
			f[strings.ToLower(a)] = h
		}
	}
}

// transportBlock runs t's Decode on e and keeps what it returned.
func (d *dec) transportBlock(t *TransportBlock, e *Entry, c *Config) {
	name := strings.ToLower(t.Name)
	b := &Block{name: name, entry: e, d: d, c: c}
	v, err := t.Decode(b)
	if err != nil {
		d.errf(e.Value.Pos, "%s: %v", name, err)
	}
	if t.store != nil {
		t.store(c, v)
		return
	}
	if c.Blocks == nil {
		c.Blocks = make(map[string]any)
	}
	c.Blocks[name] = v
}

// options returns t's decoded options in c, and whether its block is
// present (the NATS listener's always is).
func (t *TransportBlock) options(c *Config) (any, bool) {
	if t.opts != nil {
		return t.opts(c)
	}
	v, ok := c.Blocks[strings.ToLower(t.Name)]
	return v, ok && v != nil
}

// Transports builds the listeners the configuration asks for, not yet
// listening, in RegisteredTransports order: the NATS one always, every
// other one whose block is present (MQTT, WebSocket, the host's).
// Certificates are loaded here. The WebSocket transport hands MQTT
// connections to the MQTT listener's server, so both ports share the
// mqtt {} settings. An error is positioned at the block it comes from.
func (c *Config) Transports() ([]transport.Transport, error) {
	env := &Env{Config: c}
	for _, t := range transportBlocks() {
		opts, ok := t.options(c)
		if !ok {
			continue
		}
		tr, err := t.New(opts, env)
		if err == nil && isNil(tr) {
			err = fmt.Errorf("%w (%s)", ErrNoTransport, t.Name)
		}
		if err != nil {
			return nil, c.errorAt(t.errorKey(c), err)
		}
		env.built = append(env.built, tr)
	}
	return env.built, nil
}

func isNil(t transport.Transport) bool {
	if t == nil {
		return true
	}
	v := reflect.ValueOf(t)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// errorKey is the key path a build error of t is positioned at.
func (t *TransportBlock) errorKey(c *Config) string {
	if t.errKey != "" {
		return t.errKey
	}
	for _, k := range append([]string{t.Name}, t.Aliases...) {
		if _, ok := c.pos[strings.ToLower(k)]; ok {
			return strings.ToLower(k)
		}
	}
	return strings.ToLower(t.Name)
}

// changedBlocks reports the registered blocks whose options differ
// between c and next (CheckReload: a listener cannot change live).
func (c *Config) changedBlocks(next *Config) []string {
	var keys []string
	for _, t := range transportBlocks() {
		if t.opts != nil {
			continue // built-in: restartOnly covers it
		}
		a, _ := t.options(c)
		b, _ := t.options(next)
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, t.errorKey(next))
		}
	}
	return keys
}
