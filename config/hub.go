package config

import (
	"log/slog"

	"github.com/busbar/busbar/hub"
)

// HubStore is the Store that keeps the MQTT state in the hub's JetStream
// when `mqtt { js_domain }` is set (nil otherwise): the broker's
// Options.Store, and a Service to start after the leaf node service. The
// state goes through the first leafnodes remote, in the account it binds.
func (c *Config) HubStore(logger *slog.Logger) (*hub.Store, error) {
	if c.MQTT == nil || c.MQTT.JSDomain == "" {
		return nil, nil
	}
	if c.Leafnodes == nil || len(c.Leafnodes.Remotes) == 0 {
		return nil, Errors{{Pos: c.MQTT.jsDomainAt, Msg: "mqtt: js_domain keeps MQTT state in a hub's JetStream: it needs a leafnodes { remotes } link to that hub"}}
	}
	return hub.New(hub.Options{Domain: c.MQTT.JSDomain, Replicas: c.MQTT.StreamReplicas,
		Account: c.Leafnodes.Remotes[0].Account, Logger: logger}), nil
}
