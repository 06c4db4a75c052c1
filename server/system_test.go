package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/internal/natscli"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/server"
)

// sysConf has a system account user (admin) and an application account
// (APP) whose user may ask who it is.
const sysConf = `
server_name: edge-7
port: %d
http_port: %d
system_account: SYS
accounts {
  SYS: { users: [ {user: admin, password: "adm1n-pw"} ] }
  APP: { users: [
    {user: app, password: "app-pw", permissions: {publish: ["orders.>", "$SYS.REQ.USER.INFO"], subscribe: ["orders.>", "_INBOX.>"]}}
    {user: ops, password: "ops-pw"}
  ] }
}
`

type sysEnv struct {
	s        *server.Server
	url      string
	httpPort int
}

func startSys(t *testing.T) *sysEnv {
	t.Helper()
	e := &sysEnv{httpPort: testpeer.FreePort(t)}
	port := testpeer.FreePort(t)
	cfg, err := config.Parse([]byte(fmt.Sprintf(sysConf, port, e.httpPort)), "sys.conf")
	require.NoError(t, err)
	e.s, err = server.Start(cfg, server.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.s.Shutdown(context.Background()) })
	e.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	return e
}

func (e *sysEnv) admin(t *testing.T) *nats.Conn {
	return connect(t, e.url, nats.UserInfo("admin", "adm1n-pw"))
}

func connect(t *testing.T, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(5 * time.Second), nats.MaxReconnects(0)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

var admin = []string{"--user", "admin", "--password", "adm1n-pw"}

// TestNatsCLI (issue 18): the NATS command-line tool, built from its Go
// module, lists, describes, pings and reports on busbar as it does on
// nats-server, logged in as a system account user; a user of another
// account is told it lacks system privileges.
func TestNatsCLI(t *testing.T) {
	e := startSys(t)
	app := connect(t, e.url, nats.UserInfo("app", "app-pw"), nats.Name("orders-svc"))
	_, err := app.SubscribeSync("orders.new")
	require.NoError(t, err)
	require.NoError(t, app.Flush())

	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"server", "list"}, []string{"edge-7", "0.1.0"}},
		{[]string{"server", "info", "edge-7"}, []string{"Server information for edge-7 (" + e.s.Broker().ID() + ")", "Auth Required: true", "Maximum Payload: 1.0 MiB"}},
		{[]string{"server", "info", e.s.Broker().ID()}, []string{"Server information for edge-7"}},
		{[]string{"server", "ping"}, []string{"edge-7", "rtt=", "1 replies"}},
		{[]string{"server", "report", "connections"}, []string{"orders-svc", "APP", "edge-7"}},
	} {
		r := natscli.Run(t, e.url, append(admin, tc.args...)...)
		require.Equal(t, 0, r.Code, "nats %v:\n%s", tc.args, r.Out)
		for _, w := range tc.want {
			require.Contains(t, r.Out, w, "nats %v", tc.args)
		}
	}
	r := natscli.Run(t, e.url, "--user", "app", "--password", "app-pw", "server", "list")
	require.NotEqual(t, 0, r.Code, r.Out)
	require.Contains(t, r.Out, "ensure the account used has system privileges")
}

// apiResponse is what the endpoints answer.
type apiResponse struct {
	Server struct {
		Name string `json:"name"`
		ID   string `json:"id"`
		Ver  string `json:"ver"`
	} `json:"server"`
	Data  json.RawMessage `json:"data"`
	Stats json.RawMessage `json:"statsz"`
	Error *struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

func request(t *testing.T, nc *nats.Conn, subj, body string) apiResponse {
	t.Helper()
	m, err := nc.Request(subj, []byte(body), 5*time.Second)
	require.NoError(t, err, subj)
	var r apiResponse
	require.NoError(t, json.Unmarshal(m.Data, &r), "%s: %s", subj, m.Data)
	return r
}

// TestSystemEndpoints: every endpoint on $SYS.REQ.SERVER.PING.<X> and
// $SYS.REQ.SERVER.<id>.<X> answers with the HTTP endpoint's JSON inside
// nats-server's envelope; a request whose filter names another server
// gets no answer from this one.
func TestSystemEndpoints(t *testing.T) {
	e := startSys(t)
	nc := e.admin(t)
	id := e.s.Broker().ID()

	st := request(t, nc, "$SYS.REQ.SERVER.PING", "")
	require.Equal(t, "edge-7", st.Server.Name)
	var stats struct {
		Connections int `json:"connections"`
		Active      int `json:"active_servers"`
	}
	require.NoError(t, json.Unmarshal(st.Stats, &stats))
	require.Equal(t, 1, stats.Connections)
	require.Equal(t, 1, stats.Active)

	var httpVarz map[string]any
	getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/varz", e.httpPort), &httpVarz)
	for _, ep := range []string{"VARZ", "CONNZ", "SUBSZ", "HEALTHZ", "LEAFZ", "ACCOUNTZ", "STATSZ", "IDZ"} {
		for _, subj := range []string{"$SYS.REQ.SERVER.PING." + ep, "$SYS.REQ.SERVER." + id + "." + ep} {
			m, err := nc.Request(subj, nil, 5*time.Second)
			require.NoError(t, err, subj)
			var r map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(m.Data, &r), subj)
			require.NotContains(t, r, "error", "%s: %s", subj, m.Data)
		}
	}
	var varz map[string]any
	require.NoError(t, json.Unmarshal(request(t, nc, "$SYS.REQ.SERVER.PING.VARZ", "").Data, &varz))
	for _, k := range []string{"server_id", "server_name", "version", "port", "max_payload", "http_port"} {
		require.Equal(t, httpVarz[k], varz[k], k)
	}
	var health struct{ Status string }
	require.NoError(t, json.Unmarshal(request(t, nc, "$SYS.REQ.SERVER.PING.HEALTHZ", "").Data, &health))
	require.Equal(t, "ok", health.Status)
	var connz struct {
		Conns []struct {
			Account string `json:"account"`
			User    string `json:"authorized_user"`
		} `json:"connections"`
	}
	require.NoError(t, json.Unmarshal(request(t, nc, "$SYS.REQ.SERVER.PING.CONNZ", `{"auth":true}`).Data, &connz))
	require.Len(t, connz.Conns, 1, "the system's own clients are not connections")
	require.Equal(t, "admin", connz.Conns[0].User)
	bad := request(t, nc, "$SYS.REQ.SERVER.PING.CONNZ", `{"sort":"nonsense"}`)
	require.NotNil(t, bad.Error)
	require.Contains(t, bad.Error.Description, "invalid sorting option")

	// Filters: a request for another server is not answered here. The
	// responder handles requests in order, so the answer to the second
	// request arriving first means the first got none.
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox + ".*")
	require.NoError(t, err)
	require.NoError(t, nc.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox+".other", []byte(`{"server_name":"edge-8"}`)))
	require.NoError(t, nc.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox+".exact", []byte(`{"server_name":"edge","exact_match":true}`)))
	require.NoError(t, nc.PublishRequest("$SYS.REQ.SERVER.PING.VARZ", inbox+".partial", []byte(`{"server_name":"edge"}`)))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, inbox+".partial", m.Subject, "a filter naming another server, or not this one exactly, is not answered")
	_, err = nc.Request("$SYS.REQ.SERVER.PING.NOSUCHZ", nil, 5*time.Second)
	require.ErrorIs(t, err, nats.ErrNoResponders)
}

// TestSystemRequestsNeedTheSystemAccount: the server requests are in the
// system account only: a user of another account, even one with every
// permission, finds no responder there.
func TestSystemRequestsNeedTheSystemAccount(t *testing.T) {
	e := startSys(t)
	nc := connect(t, e.url, nats.UserInfo("ops", "ops-pw"))
	for _, subj := range []string{"$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.CONNZ", "$SYS.REQ.SERVER." + e.s.Broker().ID() + ".VARZ"} {
		_, err := nc.Request(subj, nil, 5*time.Second)
		require.ErrorIs(t, err, nats.ErrNoResponders, subj)
	}
}

// TestUserInfo: $SYS.REQ.USER.INFO answers, in any account, who the
// requester is: user, account and permissions.
func TestUserInfo(t *testing.T) {
	e := startSys(t)
	var info struct {
		User        string `json:"user"`
		Account     string `json:"account"`
		Permissions struct {
			Publish struct {
				Allow []string `json:"allow"`
			} `json:"publish"`
		} `json:"permissions"`
	}
	app := connect(t, e.url, nats.UserInfo("app", "app-pw"))
	r := request(t, app, "$SYS.REQ.USER.INFO", "")
	require.Nil(t, r.Error)
	require.NoError(t, json.Unmarshal(r.Data, &info))
	require.Equal(t, "app", info.User)
	require.Equal(t, "APP", info.Account)
	require.Equal(t, []string{"orders.>", "$SYS.REQ.USER.INFO"}, info.Permissions.Publish.Allow)

	r = request(t, e.admin(t), "$SYS.REQ.USER.INFO", "")
	require.NoError(t, json.Unmarshal(r.Data, &info))
	require.Equal(t, "admin", info.User)
	require.Equal(t, "SYS", info.Account)
}

// TestConnectDisconnectAdvisories: a system account user subscribed to
// $SYS.ACCOUNT.> sees APP's client connect and disconnect, with
// nats-server's event types and fields; the system's own clients and the
// global account are not announced.
func TestConnectDisconnectAdvisories(t *testing.T) {
	e := startSys(t)
	nc := e.admin(t)
	sub, err := nc.SubscribeSync("$SYS.ACCOUNT.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	app := connect(t, e.url, nats.UserInfo("app", "app-pw"), nats.Name("orders-svc"))
	require.NoError(t, app.Publish("orders.new", []byte("12345")))
	require.NoError(t, app.Flush())
	app.Close()

	type event struct {
		Type   string `json:"type"`
		ID     string `json:"id"`
		Server struct {
			Name string `json:"name"`
		} `json:"server"`
		Client struct {
			ID      uint64 `json:"id"`
			Account string `json:"acc"`
			User    string `json:"user"`
			Name    string `json:"name"`
			Lang    string `json:"lang"`
			Host    string `json:"host"`
		} `json:"client"`
		Sent struct {
			Msgs int64 `json:"msgs"`
		} `json:"sent"`
		Reason string `json:"reason"`
	}
	next := func() (string, event) {
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		var ev event
		require.NoError(t, json.Unmarshal(m.Data, &ev), "%s", m.Data)
		return m.Subject, ev
	}
	subj, ev := next()
	require.Equal(t, "$SYS.ACCOUNT.APP.CONNECT", subj)
	require.Equal(t, "io.nats.server.advisory.v1.client_connect", ev.Type)
	require.Equal(t, "edge-7", ev.Server.Name)
	require.Equal(t, "app", ev.Client.User)
	require.Equal(t, "APP", ev.Client.Account)
	require.Equal(t, "127.0.0.1", ev.Client.Host)
	require.NotEmpty(t, ev.ID)
	subj, ev = next()
	require.Equal(t, "$SYS.ACCOUNT.APP.DISCONNECT", subj)
	require.Equal(t, "io.nats.server.advisory.v1.client_disconnect", ev.Type)
	require.Equal(t, "orders-svc", ev.Client.Name)
	require.Equal(t, "go", ev.Client.Lang)
	require.Equal(t, int64(1), ev.Sent.Msgs)
	require.Equal(t, "Client Closed", ev.Reason)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v), "%s", b)
}
