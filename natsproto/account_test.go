package natsproto_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// startAccounts runs a broker with users in accounts SVC and APP, one in
// the global account, and SVC's exports imported by APP.
func startAccounts(t *testing.T) *server {
	t.Helper()
	return startAuth(t, auth.Options{Users: []auth.User{
		{Name: "svc", Password: "svcpw", Account: "SVC"},
		{Name: "svc2", Password: "svc2pw", Account: "SVC"},
		{Name: "app", Password: "apppw", Account: "APP"},
		{Name: "other", Password: "otherpw", Account: "OTHER"},
		{Name: "global", Password: "globalpw"},
	}}, broker.Options{Accounts: []broker.Account{
		{Name: "SVC", Exports: []broker.Export{
			{Subject: "events.>"},
			{Subject: "svc.>", Service: true},
		}},
		{Name: "APP", Imports: []broker.Import{
			{Account: "SVC", Subject: "events.>", To: "svc.events.>"},
			{Service: true, Account: "SVC", Subject: "svc.time", To: "time"},
			{Service: true, Account: "SVC", Subject: "svc.idle"},
		}},
		{Name: "OTHER"},
	}})
}

func TestAccountsIsolationNatsGo(t *testing.T) {
	s := startAccounts(t)
	conns := map[string]*nats.Conn{}
	subs := map[string]*nats.Subscription{}
	for _, u := range []string{"svc", "svc2", "app", "other", "global"} {
		nc, err := connect(t, s, nats.UserInfo(u, u+"pw"))
		require.NoError(t, err)
		conns[u] = nc
		sub, err := nc.SubscribeSync("x.>")
		require.NoError(t, err)
		subs[u] = sub
		require.NoError(t, nc.Flush())
	}
	for _, u := range []string{"svc", "app", "other", "global"} {
		require.NoError(t, conns[u].Publish("x."+u, []byte(u)))
		require.NoError(t, conns[u].Flush())
	}
	// Each subscriber sees exactly its own account's message: svc and
	// svc2 share SVC; nothing crosses without an import.
	want := map[string]string{"svc": "x.svc", "svc2": "x.svc", "app": "x.app", "other": "x.other", "global": "x.global"}
	for u, subj := range want {
		m := recv(t, subs[u])
		require.Equal(t, subj, m.Subject, u)
		_, err := subs[u].NextMsg(50 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout, "%s received a message of another account", u)
	}
}

func TestAccountsStreamImportNatsGo(t *testing.T) {
	s := startAccounts(t)
	svc, err := connect(t, s, nats.UserInfo("svc", "svcpw"))
	require.NoError(t, err)
	app, err := connect(t, s, nats.UserInfo("app", "apppw"))
	require.NoError(t, err)
	other, err := connect(t, s, nats.UserInfo("other", "otherpw"))
	require.NoError(t, err)
	got, err := app.SubscribeSync("svc.events.*")
	require.NoError(t, err)
	never, err := other.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, app.Flush())
	require.NoError(t, other.Flush())

	require.NoError(t, svc.PublishMsg(&nats.Msg{Subject: "events.login", Data: []byte("ann"), Header: nats.Header{"K": []string{"v"}}}))
	require.NoError(t, svc.Publish("private", []byte("not exported")))
	require.NoError(t, svc.Flush())
	m := recv(t, got)
	require.Equal(t, "svc.events.login", m.Subject)
	require.Equal(t, "ann", string(m.Data))
	require.Equal(t, "v", m.Header.Get("K"))
	_, err = got.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout)
	_, err = never.NextMsg(50 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "OTHER imports nothing")
}

func TestAccountsServiceImportNatsGo(t *testing.T) {
	s := startAccounts(t)
	svc, err := connect(t, s, nats.UserInfo("svc", "svcpw"))
	require.NoError(t, err)
	app, err := connect(t, s, nats.UserInfo("app", "apppw"))
	require.NoError(t, err)
	reqSubj := make(chan string, 10)
	_, err = svc.Subscribe("svc.time", func(m *nats.Msg) {
		reqSubj <- m.Subject + " " + m.Reply
		require.NoError(t, m.Respond(append([]byte("time for "), m.Data...)))
	})
	require.NoError(t, err)
	require.NoError(t, svc.Flush())

	for i := 0; i < 3; i++ { // new-style requests share one inbox subscription
		r, err := app.Request("time", []byte("app"), 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, "time for app", string(r.Data))
		seen := <-reqSubj
		require.Regexp(t, `^svc\.time _R_\.[0-9a-f]+\.[0-9a-z]+$`, seen, "the responder sees a reply subject of its own account")
	}
	// Old-style request: a fresh inbox per request.
	oldStyle, err := connect(t, s, nats.UserInfo("app", "apppw"), nats.UseOldRequestStyle())
	require.NoError(t, err)
	r, err := oldStyle.Request("time", []byte("old"), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "time for old", string(r.Data))

	// An import whose exporter has no subscriber: no responders.
	_, err = app.Request("svc.idle", nil, 5*time.Second)
	require.ErrorIs(t, err, nats.ErrNoResponders)
	// The exporter's name for the service is not visible in APP.
	_, err = app.Request("svc.time", nil, 5*time.Second)
	require.ErrorIs(t, err, nats.ErrNoResponders)
}
