package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/server"
)

// appAuth is a host application's own Authenticator: tokens "app-<name>".
var appAuth = auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	if name, ok := strings.CutPrefix(c.Token, "app-"); ok && c.Token != "" {
		return &auth.Identity{Name: name}, true, nil
	}
	if name, ok := strings.CutPrefix(c.Password, "app-"); ok && c.Password != "" { // MQTT carries a token as the password
		return &auth.Identity{Name: name}, true, nil
	}
	return nil, false, nil
})

// fullConf names every listener on free ports, a store, and a user.
func fullConf(t *testing.T) (*config.Config, map[string]int) {
	t.Helper()
	ports := map[string]int{}
	for _, n := range []string{"nats", "mqtt", "websocket", "http"} {
		ports[n] = testpeer.FreePort(t)
	}
	text := fmt.Sprintf(`
server_name: app-broker
port: %d
http_port: %d
jetstream { store_dir: %q }
pid_file: %q
authorization { users [ {user: ops, password: "ops-pw"} ] }
mqtt { port: %d }
websocket { port: %d, no_tls: true }
`, ports["nats"], ports["http"], t.TempDir(), filepath.Join(t.TempDir(), "busbar.pid"), ports["mqtt"], ports["websocket"])
	cfg, err := config.Parse([]byte(text), "app.conf")
	require.NoError(t, err)
	return cfg, ports
}

// TestStartServesWhatTheConfigurationNames (issue 18): one call starts
// the broker, its store, NATS, MQTT and WebSocket listeners and
// monitoring from a configuration; the host's Authenticator is asked in
// front of the configured users; the WebSocket handler and monitoring
// mount on the host's mux; /metrics carries the MQTT and store figures
// and the Go and process ones with no host code.
func TestStartServesWhatTheConfigurationNames(t *testing.T) {
	cfg, ports := fullConf(t)
	s, err := server.Start(cfg, server.Options{Authenticator: appAuth})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	pid, err := os.ReadFile(cfg.PidFile)
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(os.Getpid()), string(pid))
	require.NotNil(t, s.Store(), "jetstream { store_dir } opened the durable store")

	mux := http.NewServeMux()
	ws := s.WebSocketHandler()
	mux.Handle("/ws", ws)
	mux.Handle("/ws/mqtt", ws)
	mux.Handle("/monitor/", http.StripPrefix("/monitor", s.Monitor()))
	app := httptest.NewServer(mux)
	t.Cleanup(app.Close)
	appWS := "ws://" + strings.TrimPrefix(app.URL, "http://")

	ops := connect(t, fmt.Sprintf("nats://127.0.0.1:%d", ports["nats"]), nats.UserInfo("ops", "ops-pw"))
	sub, err := ops.SubscribeSync("sensors.>")
	require.NoError(t, err)
	require.NoError(t, ops.Flush())
	// The host's tokens, over the listener's WebSocket and the app's mux.
	for _, url := range []string{fmt.Sprintf("ws://127.0.0.1:%d", ports["websocket"]), appWS + "/ws"} {
		nc := connect(t, url, nats.Token("app-ann"))
		require.NoError(t, nc.Publish("sensors.ws", []byte(url)))
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, url, string(m.Data))
	}
	_, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", ports["nats"]), nats.Token("stolen"), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)
	// MQTT over TCP and over the app's /ws/mqtt.
	for i, url := range []string{fmt.Sprintf("tcp://127.0.0.1:%d", ports["mqtt"]), appWS + "/ws/mqtt"} {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("dev-" + strconv.Itoa(i)).
			SetUsername("x").SetPassword("app-dev").SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error(), url)
		tok = c.Publish("sensors/t"+strconv.Itoa(i), 1, false, "21.5")
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, "sensors.t"+strconv.Itoa(i), m.Subject)
		if i == 0 {
			defer c.Disconnect(50) // a session for the figures below
		} else {
			c.Disconnect(50)
		}
	}

	for _, base := range []string{fmt.Sprintf("http://127.0.0.1:%d", ports["http"]), app.URL + "/monitor"} {
		fams := scrape(t, base+"/metrics")
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", monitor.MetricMQTTSessions, monitor.MetricStoreFsyncs, monitor.MetricInMessages} {
			require.Contains(t, fams, name, base)
		}
		require.GreaterOrEqual(t, fams[monitor.MetricMQTTSessions].GetMetric()[0].GetGauge().GetValue(), 1.0)
	}
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err, "%s", body)
	return fams
}

// TestStartFailsNamingTheListener: a port in use fails Start with the
// listener's name, and nothing is left running (the other ports are
// free again, the store is closed so it opens again).
func TestStartFailsNamingTheListener(t *testing.T) {
	cfg, ports := fullConf(t)
	taken, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports["websocket"]))
	require.NoError(t, err)
	defer taken.Close()
	_, err = server.Start(cfg, server.Options{})
	require.ErrorContains(t, err, "websocket: listen")
	require.ErrorContains(t, err, "address already in use")
	for _, n := range []string{"nats", "mqtt", "http"} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[n]))
		require.NoError(t, err, "%s port still bound after the failed Start", n)
		l.Close()
	}
	taken.Close()
	cfg2, err := config.Parse(fmt.Appendf(nil, "port: %d\njetstream { store_dir: %q }", ports["nats"], cfg.Store.Dir), "again.conf")
	require.NoError(t, err)
	s, err := server.Start(cfg2, server.Options{})
	require.NoError(t, err, "the store was closed by the failed Start")
	require.NoError(t, s.Shutdown(context.Background()))
	require.ErrorIs(t, s.Shutdown(context.Background()), broker.ErrClosed)
	_, err = os.Stat(cfg.PidFile)
	require.True(t, errors.Is(err, os.ErrNotExist), "no pid file is left")
}

// TestReloadKeepsTheHostAuthenticator: a reload applies the file's new
// users and keeps the host's Authenticator in front.
func TestReloadKeepsTheHostAuthenticator(t *testing.T) {
	port := testpeer.FreePort(t)
	parse := func(pw string) *config.Config {
		cfg, err := config.Parse(fmt.Appendf(nil, "port: %d\nauthorization { users [ {user: ops, password: %q} ] }", port, pw), "r.conf")
		require.NoError(t, err)
		return cfg
	}
	s, err := server.Start(parse("one"), server.Options{Authenticator: appAuth})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	connect(t, url, nats.UserInfo("ops", "one"))
	require.NoError(t, s.Reload(parse("two")))
	connect(t, url, nats.UserInfo("ops", "two"))
	connect(t, url, nats.Token("app-ann"))
	_, err = nats.Connect(url, nats.UserInfo("ops", "one"), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	bad := parse("three")
	bad.NATS.Port++ // a listener change needs a restart
	require.Error(t, s.Reload(bad))
	connect(t, url, nats.UserInfo("ops", "two"))
}
