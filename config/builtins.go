package config

import (
	"time"

	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
	"github.com/busbar/busbar/websocket"
)

// The built-in transports go through the registry like a host's: this
// package registers them (the transport packages sit below config and
// cannot), first, so they are built first and in this order. Their
// options stay in typed Config fields, which flags and hosts change
// after Load.
func init() {
	RegisterTransport(TransportBlock{
		Name: "nats", topLevel: true, errKey: "tls",
		opts: func(c *Config) (any, bool) { return c.NATS, true },
		New: func(o any, _ *Env) (transport.Transport, error) {
			return natsproto.New(o.(natsproto.Options))
		},
	})
	RegisterTransport(TransportBlock{
		Name: "mqtt", errKey: "mqtt.tls",
		Decode: func(b *Block) (any, error) { return b.d.mqtt(b.entry, b.c), nil },
		opts:   func(c *Config) (any, bool) { return c.MQTT, c.MQTT != nil },
		store:  func(c *Config, v any) { c.MQTT = v.(*MQTTOptions) },
		New:    newMQTT,
	})
	RegisterTransport(TransportBlock{
		Name: "websocket", Aliases: []string{"ws"}, errKey: "websocket.tls",
		Decode: func(b *Block) (any, error) { return b.d.websocket(b.entry, b.c), nil },
		opts:   func(c *Config) (any, bool) { return c.WebSocket, c.WebSocket != nil },
		store:  func(c *Config, v any) { c.WebSocket = v.(*WebSocketOptions) },
		New:    newWebSocket,
	})
}

func newMQTT(o any, _ *Env) (transport.Transport, error) {
	m := o.(*MQTTOptions)
	return mqtt.New(mqtt.Options{
		Host: m.Host, Port: m.Port, TLS: m.TLS, AckWait: m.AckWait, MaxAckPending: m.MaxAckPending,
		MaxPacketSize: m.MaxPacketSize, SessionExpiry: m.SessionExpiry,
		MaxKeepAlive: uint16(m.MaxKeepAlive / time.Second), MaxConnections: m.MaxConnections,
		MaxQueuedBytes: m.MaxQueuedBytes, MaxQueuedMessages: m.MaxQueuedMessages,
		MaxOfflineBytes: m.MaxOfflineBytes, MaxTopicAlias: m.MaxTopicAlias,
	})
}

// newWebSocket builds the websocket {} listener; it hands connections to
// the NATS listener and, when there is one, the MQTT listener.
func newWebSocket(o any, env *Env) (transport.Transport, error) {
	nt, _ := env.Transport("nats").(*natsproto.Transport)
	mt, _ := env.Transport("mqtt").(*mqtt.Transport)
	return websocket.New(webSocketOptions(o.(*WebSocketOptions), nt, mt))
}

// webSocketOptions maps the websocket {} block onto the transport's
// options.
func webSocketOptions(w *WebSocketOptions, nt *natsproto.Transport, mt *mqtt.Transport) websocket.Options {
	o := websocket.Options{
		Host: w.Host, Port: w.Port, Advertise: w.Advertise, SameOrigin: w.SameOrigin,
		AllowedOrigins: w.AllowedOrigins, Compression: w.Compression, HandshakeTimeout: w.HandshakeTimeout,
		JWTCookie: w.JWTCookie, UserCookie: w.UserCookie, PassCookie: w.PassCookie, TokenCookie: w.TokenCookie,
		Headers: w.Headers, PingInterval: w.PingInterval, MaxConnections: w.MaxConnections,
		MaxConnectionsPerIP: w.MaxConnectionsPerIP, TrustedProxies: w.TrustedProxies,
		MaxHandshakeBytes: w.MaxHandshakeBytes,
	}
	if nt != nil {
		o.NATS = nt
	}
	if !w.NoTLS {
		o.TLS = w.TLS
	}
	if mt != nil {
		o.MQTT = mt
	}
	if a := w.Authorization; a != nil {
		o.AuthTimeout = a.Timeout
	}
	if h := w.Handshake; h != nil {
		o.Handshake = websocket.Handshake{
			Required: h.Required, BasicAuth: h.BasicAuth, SubprotocolAuth: h.SubprotocolAuth,
			CloseOnFailure: h.OnFailure == "close",
		}
		if h.KeyAuth != nil {
			o.Handshake.KeyAuth = websocket.Source(*h.KeyAuth)
		}
		if h.JWTAuth != nil {
			o.Handshake.JWTAuth = websocket.Source(*h.JWTAuth)
		}
	}
	return o
}
