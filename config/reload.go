package config

import (
	"fmt"
	"log/slog"
	"reflect"

	"github.com/busbar/busbar/broker"
)

// restartOnly are the settings a running broker cannot change: a reload
// that changes one is refused whole, as nats-server refuses it. Each
// names the keys whose position the error points at.
var restartOnly = []struct {
	keys []string
	get  func(c *Config) any
}{
	{[]string{"listen", "port", "host", "net"}, func(c *Config) any { return [2]any{c.NATS.Host, c.NATS.Port} }},
	{[]string{"tls"}, func(c *Config) any { return c.NATS.TLS }},
	{[]string{"client_advertise"}, func(c *Config) any { return c.NATS.ClientAdvertise }},
	{[]string{"server_name"}, func(c *Config) any { return c.Broker.ServerName }},
	{[]string{"http", "http_port", "monitor_port"}, func(c *Config) any { return c.Monitor }},
	{[]string{"jetstream", "store_dir"}, func(c *Config) any { return c.Store }},
	{[]string{"websocket", "ws"}, func(c *Config) any { return c.WebSocket }},
	{[]string{"mqtt"}, func(c *Config) any { return c.MQTT }},
	{[]string{"leafnodes", "leaf"}, func(c *Config) any { return c.Leafnodes }},
	{[]string{"log_file", "logfile"}, func(c *Config) any { return c.Log.File }},
	{[]string{"log_format"}, func(c *Config) any { return c.Log.Format }},
	{[]string{"system_account", "no_system_account"}, func(c *Config) any { return c.SystemAccountName() }},
	{[]string{"pid_file", "pidfile"}, func(c *Config) any { return c.PidFile }},
}

// CheckReload reports, with positions in next, every setting next changes
// that needs a restart (listeners, TLS, the websocket, mqtt and leafnodes
// blocks and every registered transport block, the store, the log file).
func (c *Config) CheckReload(next *Config) error {
	var errs Errors
	for _, r := range restartOnly {
		if reflect.DeepEqual(r.get(c), r.get(next)) {
			continue
		}
		at := Pos{File: next.File, Line: 1, Col: 1}
		for _, k := range r.keys {
			if p, ok := next.pos[k]; ok {
				at = p
				break
			}
		}
		errs = append(errs, &Error{Pos: at, Msg: fmt.Sprintf("%s: cannot be changed by a reload (restart busbar); the running configuration is kept", r.keys[0])})
	}
	for _, k := range c.changedBlocks(next) { // the host's transport blocks
		at, ok := next.pos[k]
		if !ok {
			at = Pos{File: next.File, Line: 1, Col: 1}
		}
		errs = append(errs, &Error{Pos: at, Msg: fmt.Sprintf("%s: cannot be changed by a reload (restart busbar); the running configuration is kept", k)})
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Reload applies next to the broker b was built from cur (users,
// passwords, tokens, permissions and limits), after CheckReload. On an
// error nothing changes. logger receives auth's start-up warnings.
func Reload(b *broker.Broker, cur, next *Config, logger *slog.Logger) error {
	if err := cur.CheckReload(next); err != nil {
		return err
	}
	opts, err := next.BrokerOptions(logger)
	if err != nil {
		return err
	}
	if err := b.Reload(opts); err != nil {
		return next.errorAt(firstLimitKey(next), err)
	}
	return nil
}

func firstLimitKey(c *Config) string {
	for _, k := range []string{"max_payload", "max_pending", "max_control_line", "ping_interval", "write_deadline"} {
		if _, ok := c.pos[k]; ok {
			return k
		}
	}
	return ""
}
